"""What the withdrawal steps share: the reasons a request waits for a person, and the small writes
that hold it there or note an ambiguous answer, each committed at once."""

from __future__ import annotations

import logging
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("investment_jobs.withdrawals")

PAID = "paid"
FAILED_PAYOUT = ("failed", "canceled")

class WithdrawalsNeedOperator(Exception):
    """Requests that no retry will finish alone: an operator must look (the summary lists them)."""


class PayoutsStillAmbiguous(Exception):
    """Some payouts got an ambiguous answer: they stay ``processing``; a retry uses the same key."""


class StripeRefusedThePlatform(Exception):
    """Stripe refused the platform's own credentials (401/403): a configuration problem, not any
    request's. The run stops at the first one and leaves every request where it was."""


# Why a request needs an operator (withdrawal_requests.operator_case, migration 0006).
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
PAYOUT_MISMATCH = "payout_mismatch"
BALANCE_UNCOVERED = "balance_uncovered"  # settle keeps trying it: it completes once the balance covers it
PAYOUT_UNKNOWN = "payout_unknown"
ACCOUNT_NOT_PAYABLE = "account_not_payable"
TRANSFER_UNREVERSED = "transfer_unreversed"  # a Connect payout failed, and Stripe refused to give the transfer back


def platform_refused(exc: Exception) -> StripeRefusedThePlatform:
    """Stripe refused the platform's key while reading or giving back: no request was changed."""
    return StripeRefusedThePlatform(
        f"Stripe refused the API key of connection 'stripe_default' ({exc}); no request was changed. "
        "Fix the key (Admin → Connections → stripe_default → Test); the next run settles them")


def amounts_by_currency() -> defaultdict[str, Decimal]:
    return defaultdict(Decimal)


def as_text(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {currency: str(total) for currency, total in sorted(amounts.items())}


def record_ambiguous(conn: psycopg.Connection, request_id: str, detail: str) -> None:
    conn.execute(
        "UPDATE investment.withdrawal_requests SET last_error = %s, updated_at = now() WHERE id = %s",
        (detail[:1000], request_id))
    conn.commit()


def flag_operator(conn: psycopg.Connection, request_id: str, why: str, case: str) -> None:
    """Hold one request for a person: the job stops touching it (but a ``balance_uncovered`` one)."""
    conn.execute(
        """UPDATE investment.withdrawal_requests SET needs_operator = %s, operator_case = %s, updated_at = now()
           WHERE id = %s""", (why[:1000], case, request_id))
    conn.commit()
    log.error("withdrawal %s needs an operator: %s", request_id, why)
