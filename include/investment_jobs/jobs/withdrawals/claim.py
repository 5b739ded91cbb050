"""Step 1, claim: approved → processing (the amount reserved) or rejected, in one short transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.config import SUMMARY_ID_LIMIT, CurrencyAmounts
from investment_jobs.jobs.withdrawals.state import amounts_by_currency, as_text, log
from investment_jobs.stripe.payouts import DESTINATION_SQL, Rejection, destination_of, rejection_for
from investment_jobs.views.summaries import refresh_payouts_of

if TYPE_CHECKING:
    import psycopg

@dataclass(frozen=True)
class Candidate:
    request_id: str
    account_id: str
    user_id: str
    amount: Decimal
    destination: Any
    account_user_id: str
    account_status: str
    current_balance: Decimal
    currency: str


KNOWN_DESTINATIONS = f"""
    SELECT DISTINCT account_id::text, {DESTINATION_SQL}
    FROM investment.withdrawal_requests
    WHERE status = 'completed' AND account_id = ANY(%s::uuid[])
"""  # noqa: S608 - DESTINATION_SQL is this package's constant, no input


def claim_requests(conn: psycopg.Connection, run_id: str, batch_size: int,
                   review: CurrencyAmounts | None = None) -> dict[str, Any]:
    """Move approved stripe_payout requests to processing (reserving) or rejected, in one transaction.

    Requests are taken oldest first. Accounts are locked in id order, so two runs (or a settle)
    never deadlock here, and an overlapping run skips the requests this one holds. With a review
    threshold (``WITHDRAWAL_REVIEW_THRESHOLD``), a claimed request at or above it, or to a
    destination its account was never paid to, is held for a person: reserved, never paid until
    approved (``review_status = 'pending_review'``).
    """
    with conn.transaction():
        locked = conn.execute(
            """
            SELECT w.id::text, w.account_id::text, w.user_id::text, w.amount, w.destination_details
            FROM investment.withdrawal_requests w
            WHERE w.status = 'approved' AND w.withdrawal_method = 'stripe_payout'
            ORDER BY w.created_at, w.id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
            """, (batch_size,)).fetchall()
        account_ids = sorted({row[1] for row in locked})
        accounts = {row[0]: row[1:] for row in conn.execute(
            """
            SELECT a.id::text, a.user_id::text, a.status, a.current_balance, p.currency
            FROM investment.accounts a JOIN investment.products p ON p.id = a.product_id
            WHERE a.id = ANY(%s::uuid[])
            ORDER BY a.id
            FOR UPDATE OF a
            """, (account_ids,)).fetchall()}
        reserved = dict(conn.execute(
            """
            SELECT account_id::text, sum(amount) FROM investment.withdrawal_requests
            WHERE status = 'processing' AND account_id = ANY(%s::uuid[])
            GROUP BY account_id
            """, (account_ids,)).fetchall())
        candidates = [
            Candidate(rid, aid, uid, amount, destination_of(details), *accounts[aid])
            for rid, aid, uid, amount, details in locked
        ]
        to_process, to_reject = decide_claims(candidates, reserved)
        held: dict[str, str] = {}
        if review is not None and review.configured and to_process:
            known = {tuple(row) for row in conn.execute(KNOWN_DESTINATIONS, (account_ids,)).fetchall()}
            held = {c.request_id: why for c, _ in to_process
                    if (why := review_reason(c, review.get(c.currency), known)) is not None}
        if to_process:
            conn.cursor().executemany(
                """
                UPDATE investment.withdrawal_requests
                SET status = 'processing', currency = %s, payout_amount_minor = %s, claimed_at = now(),
                    connected_account_id = destination_details->>'stripe_account',
                    claimed_by_run = %s, updated_at = now(),
                    review_status = CASE WHEN %s::text IS NOT NULL THEN 'pending_review' END, review_reason = %s
                WHERE id = %s AND status = 'approved'
                """, [(c.currency, minor, run_id, held.get(c.request_id), held.get(c.request_id), c.request_id)
                      for c, minor in to_process])
        if to_reject:
            conn.cursor().executemany(
                """
                UPDATE investment.withdrawal_requests
                SET status = 'rejected', rejection_reason = %s, processed_at = now(), updated_at = now()
                WHERE id = %s AND status = 'approved'
                """, [(reason, c.request_id) for c, reason in to_reject])
        refresh_payouts_of(conn, [c.request_id for c, _ in to_process])  # now in flight
    claimed_amounts, rejected_amounts = amounts_by_currency(), amounts_by_currency()
    for c, _ in to_process:
        claimed_amounts[c.currency] += c.amount
    for c, _ in to_reject:
        rejected_amounts[c.currency] += c.amount
    for c, reason in to_reject:
        log.warning("withdrawal %s rejected: %s", c.request_id, reason)
    for request_id, why in held.items():
        log.warning("withdrawal %s held for review: %s", request_id, why)
    return {
        "claimed": len(to_process), "claimed_amounts": as_text(claimed_amounts), "held_for_review": len(held),
        "rejected": len(to_reject), "rejected_amounts": as_text(rejected_amounts),
        "rejections": [{"withdrawal_request_id": c.request_id, "reason": reason}
                       for c, reason in to_reject[:SUMMARY_ID_LIMIT]],
    }


def review_reason(c: Candidate, threshold: Decimal | None, known: set[tuple[str, Any]]) -> str | None:
    """Why a claimed request waits for a person before it is paid (None: it does not). Pure."""
    if threshold is not None and c.amount >= threshold:
        return f"{c.amount} {c.currency} is at or above WITHDRAWAL_REVIEW_THRESHOLD ({threshold} {c.currency})"
    if (c.account_id, c.destination) not in known:
        return f"first payout of this account to destination {c.destination}"
    return None


def decide_claims(candidates: Iterable[Candidate], reserved: dict[str, Decimal]
                  ) -> tuple[list[tuple[Candidate, int]], list[tuple[Candidate, str]]]:
    """Oldest first per account: a request is paid only if the balance left after what is already
    reserved (and what this batch took before it) covers it. Pure, so it can be tested alone."""
    available: dict[str, Decimal] = {}
    to_process: list[tuple[Candidate, int]] = []
    to_reject: list[tuple[Candidate, str]] = []
    for c in candidates:
        if c.account_id not in available:
            available[c.account_id] = c.current_balance - reserved.get(c.account_id, Decimal(0))
        if c.user_id != c.account_user_id:
            to_reject.append((c, "request's user_id does not own the account"))
            continue
        verdict = rejection_for(account_status=c.account_status, currency=c.currency, amount=c.amount,
                                destination=c.destination, available=available[c.account_id])
        if isinstance(verdict, Rejection):
            to_reject.append((c, verdict.reason))
            continue
        available[c.account_id] -= c.amount
        to_process.append((c, verdict))
    return to_process, to_reject
