"""Stripe: the hook on ``stripe_default``, payout helpers, and the local stand-in server."""
