"""Stripe: the hook on ``stripe_default``, one function per Stripe call, and the pure payout rules."""
