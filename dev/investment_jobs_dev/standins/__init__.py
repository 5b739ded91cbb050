"""Stateful stand-ins of the ML engine and Stripe: real HTTP servers that follow contracts.md and
Stripe's API, with switches to inject faults (``/_admin/faults``)."""
