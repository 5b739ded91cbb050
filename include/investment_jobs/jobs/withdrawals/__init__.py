"""withdrawal_processing: pay approved withdrawal requests through Stripe, each exactly once.

States: ``approved → processing → completed | failed``; ``rejected`` only before money moved.
Every step commits before the next outside call, so a crash anywhere leaves a state that the
next run (or the task's retry) finishes with the same idempotency key:

1. ``claim``    one short transaction: lock approved ``stripe_payout`` requests (``FOR UPDATE SKIP
                LOCKED``) and their accounts; reject what can never be paid (account not active,
                no destination, an amount the currency cannot carry) or is not covered by the
                available balance (current balance − amounts already in ``processing``); move
                the rest to ``processing``, which reserves their amounts.
2. ``pay``      per request, under a session advisory lock: commit the attempt, create the payout
                with key ``withdrawal-<id>``, commit the payout id (or the definite failure, or
                the ambiguous error that leaves it in ``processing`` for a retry). Past Stripe's
                key window it first looks the payout up by metadata.
3. ``settle``   read the payouts back (one listing): ``paid`` → ``completed`` with one
                ``withdrawal`` transaction, the balance and ``total_withdrawn`` moved once and an
                outbox row for the ML engine, in one transaction; ``failed``/``canceled`` →
                ``failed`` (reservation released); a completed payout that failed later is
                reversed by a ``withdrawal_reversal`` transaction.
4. ``notify``   post pending outbox rows to the ML engine; never touches a request.
5. ``summary``  the run's counts and the book's open requests; fails the run when a person must act.

One module per step; ``state`` holds what the steps share (the operator cases, the writes that
hold a request for a person or note an ambiguous answer). Every Stripe call goes through
:mod:`investment_jobs.stripe.calls`.

``bank_transfer`` requests have no integration: they stay ``approved`` and are reported as awaiting
a manual transfer.
"""

