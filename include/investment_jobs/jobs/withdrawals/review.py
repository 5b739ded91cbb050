"""Withdrawals held for a person (``WITHDRAWAL_REVIEW_THRESHOLD``): the review page and its answers.

A held request is ``processing`` (its amount reserved) with ``review_status = 'pending_review'``;
``pay`` never takes it. The reviewer approves it (paid by this run's ``pay_reviewed``, with the
same idempotency key as any payout) or declines it: ``rejected`` with "declined by <user>:
<reason>", its reservation released, nothing sent to Stripe. Both are guarded by the request's
state, so a retried or late answer changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.jobs.withdrawals.state import log
from investment_jobs.views.summaries import refresh_payouts_of

if TYPE_CHECKING:
    import psycopg

LATER = "Decide later"
LISTED = 50  # requests on one page (the oldest; the rest wait for the next run)

PENDING = """
    SELECT w.id::text, w.account_id::text, w.user_id::text, w.amount, w.currency, a.current_balance,
           coalesce(r.reserved, 0), coalesce(w.destination_details->>'bank_account_id',
                                             w.destination_details->>'card_id'),
           w.review_reason, w.created_at, coalesce(h.paid, 0), coalesce(h.paid_amount, 0), h.last_paid
    FROM investment.withdrawal_requests w
    JOIN investment.accounts a ON a.id = w.account_id
    LEFT JOIN LATERAL (SELECT sum(amount) AS reserved FROM investment.withdrawal_requests o
                       WHERE o.account_id = w.account_id AND o.status = 'processing') r ON true
    LEFT JOIN LATERAL (SELECT count(*) AS paid, sum(amount) AS paid_amount, max(processed_at) AS last_paid
                       FROM investment.withdrawal_requests p
                       WHERE p.account_id = w.account_id AND p.status = 'completed') h ON true
    WHERE w.status = 'processing' AND w.review_status = 'pending_review' AND w.payout_id IS NULL
    ORDER BY w.created_at, w.id
    LIMIT %s
"""
APPROVE = """
    UPDATE investment.withdrawal_requests
    SET review_status = 'approved', reviewed_by = %s, reviewed_at = now(), review_reason = coalesce(%s, review_reason),
        updated_at = now()
    WHERE id = ANY(%s::uuid[]) AND status = 'processing' AND review_status = 'pending_review'
    RETURNING id::text
"""
# Declining releases the reservation (the request leaves processing); it was never attempted.
DECLINE = """
    UPDATE investment.withdrawal_requests
    SET status = 'rejected', review_status = 'declined', reviewed_by = %s, reviewed_at = now(),
        rejection_reason = %s, processed_at = now(), updated_at = now()
    WHERE id = ANY(%s::uuid[]) AND status = 'processing' AND review_status = 'pending_review'
      AND payout_id IS NULL AND payout_attempts = 0
    RETURNING id::text
"""


@dataclass(frozen=True)
class Held:
    request_id: str
    account_id: str
    user_id: str
    amount: Decimal
    currency: str
    balance: Decimal
    reserved: Decimal
    destination: str | None
    why: str | None
    requested_at: Any
    paid_before: int
    paid_before_amount: Decimal
    last_paid: Any

    @property
    def approve(self) -> str:
        return f"Approve {self.amount} {self.currency} · {self.request_id}"

    @property
    def decline(self) -> str:
        return f"Decline {self.amount} {self.currency} · {self.request_id}"


def pending(conn: psycopg.Connection, limit: int = LISTED) -> list[Held]:
    rows = conn.execute(PENDING, (limit,)).fetchall()
    conn.commit()
    return [Held(*row) for row in rows]


def options(held: list[Held]) -> list[str]:
    return [LATER] + [o for h in held for o in (h.approve, h.decline)]


def render(held: list[Held]) -> str:
    """The review page: one line per request with what a reviewer checks."""
    lines = [f"**{len(held)}** withdrawal(s) wait for a review before they are paid. Tick *Approve* or "
             "*Decline* for each (a decline needs a reason; it is shown to the account holder as "
             "\"declined by <you>: <reason>\"). Requests left unticked wait for the next run.", "",
             "| request | account | amount | balance (reserved) | destination | paid before | why held |",
             "|---|---|---:|---:|---|---|---|"]
    for h in held:
        history = (f"{h.paid_before} payout(s), {h.paid_before_amount} {h.currency}, last "
                   f"{h.last_paid:%Y-%m-%d}" if h.paid_before else "never")
        lines.append(f"| `{h.request_id}` | `{h.account_id}` | **{h.amount} {h.currency}** | "
                     f"{h.balance} ({h.reserved}) | `{h.destination}` | {history} | {h.why or ''} |")
    return "\n".join(lines)


def figures(held: list[Held]) -> dict[str, Any]:
    return {"requests": [{"withdrawal_request_id": h.request_id, "account_id": h.account_id, "amount": str(h.amount),
                          "currency": h.currency, "balance": str(h.balance), "reserved": str(h.reserved),
                          "destination": h.destination, "why_held": h.why, "paid_before": h.paid_before}
                         for h in held]}


class ContradictoryAnswer(ValueError):
    """The same request was both approved and declined."""


def read_answer(chosen: list[str], held: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(approved ids, declined ids) from the ticked options; nothing ticked but *Decide later* is
    ([], []). Pure."""
    approve, decline = set(), set()
    for entry in held:
        rid, amount, currency = entry["withdrawal_request_id"], entry["amount"], entry["currency"]
        if f"Approve {amount} {currency} · {rid}" in chosen:
            approve.add(rid)
        if f"Decline {amount} {currency} · {rid}" in chosen:
            decline.add(rid)
    if both := approve & decline:
        raise ContradictoryAnswer(f"both approved and declined: {', '.join(sorted(both))}")
    return sorted(approve), sorted(decline)


def apply(conn: psycopg.Connection, approved: list[str], declined: list[str], who: str,
          reason: str | None) -> dict[str, list[str]]:
    """Write the answer in one transaction; returns the ids actually changed (a request another
    run or answer already moved is left as it is)."""
    with conn.transaction():
        done_approve = [r for (r,) in conn.execute(APPROVE, (who, None, approved)).fetchall()] if approved else []
        why = f"declined by {who}: {reason or 'no reason given'}"
        done_decline = [r for (r,) in conn.execute(DECLINE, (who, why[:1000], declined)).fetchall()] if declined else []
        refresh_payouts_of(conn, [str(r) for r in done_decline])  # no longer in flight
    for rid in done_decline:
        log.warning("withdrawal %s %s", rid, why)
    return {"approved": done_approve, "declined": done_decline}
