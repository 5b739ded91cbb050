"""Requests that need an operator (``needs_operator``): the actions that are safe for each case, and
carrying one out through the job's own code paths.

- *Retry with the same idempotency key*: the flag is cleared; the next ``pay`` (or ``settle``)
  takes the request again exactly as before (same key, same parameters). Offered where a retry
  cannot pay twice: a key conflict, a payout Stripe did not know, a paid payout the balance did
  not cover.
- *Mark failed*: only when Stripe has **no** payout for the request (looked up by its metadata
  now, not taken on trust): the request fails through ``settle.fail_processing`` (reservation
  released, no ledger row, nothing debited).
- *Mark completed*: only with the id of a **paid** payout whose metadata, amount and currency are
  this request's (read from Stripe now): the payout id is stored and the request completes through
  ``settle.complete`` (the ledger row, the balance, ``total_withdrawn`` and the outbox row, once).

A check that does not hold refuses the action with the reason (recorded; the request stays as
it was). Every action is one transaction guarded by the request's state, so an answer applied
twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.jobs.withdrawals.state import (
    ACCOUNT_NOT_PAYABLE,
    BALANCE_UNCOVERED,
    IDEMPOTENCY_CONFLICT,
    PAID,
    PAYOUT_MISMATCH,
    PAYOUT_UNKNOWN,
    TRANSFER_UNREVERSED,
    log,
)

if TYPE_CHECKING:
    import psycopg
    from stripe import StripeClient

RETRY = "Retry with the same idempotency key"
MARK_FAILED = "Mark failed (Stripe shows no payout)"
MARK_COMPLETED = "Mark completed (Stripe shows it paid; give the payout id)"
LATER = "Decide later"
ACTIONS = {
    IDEMPOTENCY_CONFLICT: (RETRY, MARK_FAILED, MARK_COMPLETED),
    PAYOUT_UNKNOWN: (RETRY, MARK_FAILED, MARK_COMPLETED),
    BALANCE_UNCOVERED: (RETRY, MARK_FAILED, MARK_COMPLETED),
    ACCOUNT_NOT_PAYABLE: (MARK_FAILED, MARK_COMPLETED),
    PAYOUT_MISMATCH: (MARK_FAILED, MARK_COMPLETED),
    TRANSFER_UNREVERSED: (RETRY,),
}
LISTED = 20  # cases asked about in one run (oldest first)


@dataclass(frozen=True)
class Case:
    request_id: str
    account_id: str
    amount: Decimal
    currency: str
    amount_minor: int
    case: str
    why: str
    payout_id: str | None
    attempts: int
    balance: Decimal
    connected_account: str | None = None  # a Connect payment's connected account
    transfer_id: str | None = None

    def options(self) -> list[str]:
        return [LATER, *ACTIONS.get(self.case, (MARK_FAILED, MARK_COMPLETED))]

    def facts(self) -> dict[str, Any]:
        return {"withdrawal_request_id": self.request_id, "account_id": self.account_id, "amount": str(self.amount),
                "currency": self.currency, "amount_minor": self.amount_minor, "case": self.case, "why": self.why,
                "payout_id": self.payout_id, "payout_attempts": self.attempts, "balance": str(self.balance),
                "connected_account": self.connected_account, "transfer_id": self.transfer_id}


CASES = """
    SELECT w.id::text, w.account_id::text, w.amount, w.currency, w.payout_amount_minor,
           coalesce(w.operator_case, 'unknown'), w.needs_operator, w.payout_id, w.payout_attempts, a.current_balance,
           w.connected_account_id, w.transfer_id
    FROM investment.withdrawal_requests w JOIN investment.accounts a ON a.id = w.account_id
    WHERE w.status = 'processing' AND w.needs_operator IS NOT NULL
      AND (%(request)s::uuid IS NULL OR w.id = %(request)s::uuid)
    ORDER BY w.claimed_at, w.id
    LIMIT %(limit)s
"""


def open_cases(conn: psycopg.Connection, limit: int = LISTED, request_id: str | None = None) -> list[Case]:
    rows = conn.execute(CASES, {"limit": limit, "request": request_id}).fetchall()
    conn.commit()
    return [Case(*row) for row in rows]


def case_of(conn: psycopg.Connection, request_id: str) -> Case | None:
    """The request's case while it still needs an operator (one indexed read), else None."""
    found = open_cases(conn, 1, request_id)
    return found[0] if found else None


def render(case: Case) -> str:
    lines = [f"Withdrawal `{case.request_id}` of account `{case.account_id}`: **{case.amount} {case.currency}** "
             f"({case.amount_minor} in Stripe's minor units), {case.attempts} payout attempt(s), stored payout "
             f"`{case.payout_id or 'none'}`, account balance {case.balance}.", "",
             f"**Case `{case.case}`**: {case.why}", "",
             *([f"A Connect payment to connected account `{case.connected_account}`: transfer "
                f"`{case.transfer_id or 'not made'}`; its payout is on that account.", ""]
               if case.connected_account else []),
             "Check the Stripe dashboard for a payout with metadata `withdrawal_request_id` = "
             f"`{case.request_id}`, then choose:", ""]
    for option in case.options()[1:]:
        if option == RETRY:
            lines.append(f"- *{RETRY}*: the job takes it again, with the same key and parameters (it cannot pay "
                         "twice).")
        elif option == MARK_FAILED:
            lines.append(f"- *{MARK_FAILED}*: checked against Stripe first; the request fails, its reservation "
                         "is released, nothing is debited.")
        else:
            lines.append(f"- *{MARK_COMPLETED}*: put the payout id (`po_…`) in *Payout id*; checked against "
                         "Stripe (paid, this request's metadata, amount and currency); the withdrawal is then "
                         "booked once: ledger, balance and the engine's notification.")
    lines += ["", f"*{LATER}* (or no answer) leaves it as it is; the next run asks again."]
    return "\n".join(lines)


class ActionRefused(Exception):
    """What Stripe shows does not allow the chosen action: nothing was changed."""


CLEAR = """
    UPDATE investment.withdrawal_requests SET needs_operator = NULL, operator_case = NULL, last_error = NULL,
           updated_at = now()
    WHERE id = %s AND status = 'processing' AND needs_operator IS NOT NULL
"""


def retry(conn: psycopg.Connection, case: Case) -> str:
    with conn.transaction():
        changed = conn.execute(CLEAR, (case.request_id,)).rowcount
    return "cleared: the next run takes it again with the same key" if changed else "already changed"


def mark_failed(conn: psycopg.Connection, client: StripeClient, case: Case, who: str, reason: str | None) -> str:
    from investment_jobs.jobs.withdrawals.settle import fail_processing
    from investment_jobs.stripe.calls import StripeCallError, find_payout_by_metadata, retrieve_payout

    if case.transfer_id is not None:
        raise ActionRefused(f"transfer {case.transfer_id} to {case.connected_account} was made: marking the request "
                            "failed would leave the money on the connected account. Retry, so the job pays it or "
                            "gives the transfer back")
    if case.connected_account is not None:
        from investment_jobs.stripe.calls import find_transfer_by_group
        from investment_jobs.stripe.payouts import transfer_group

        made = find_transfer_by_group(client, transfer_group(case.request_id))
        if made is not None:
            raise ActionRefused(f"Stripe has transfer {made.id} for this request: Retry, so the job records it and "
                                "pays it or gives it back")
    existing = find_payout_by_metadata(client, case.request_id, stripe_account=case.connected_account)
    if existing is None and case.payout_id:
        try:
            existing = retrieve_payout(client, case.payout_id, stripe_account=case.connected_account)
        except StripeCallError:  # Stripe not knowing the stored id is the case itself
            existing = None
    if existing is not None and existing.status not in ("failed", "canceled"):
        raise ActionRefused(f"Stripe has payout {existing.id} ({existing.status}) for this request: it was not "
                            "marked failed; mark it completed once it is paid")
    message = f"marked failed by {who}: {reason or 'Stripe shows no payout'}"
    with conn.transaction():
        conn.execute(CLEAR, (case.request_id,))
    done = fail_processing(conn, [(case.request_id, existing.status if existing else "none", "operator", message)])
    log.warning("withdrawal %s %s", case.request_id, message)
    return "failed" if done["failed"] else "already changed"


def mark_completed(conn: psycopg.Connection, client: StripeClient, case: Case, payout_id: str) -> str:
    from investment_jobs.jobs.withdrawals.settle import complete
    from investment_jobs.stripe.calls import StripeCallError, retrieve_payout

    payout_id = (payout_id or "").strip()
    if not payout_id.startswith("po_"):
        raise ActionRefused("give the payout id (po_…) that Stripe shows for this request")
    try:
        payout = retrieve_payout(client, payout_id, stripe_account=case.connected_account)
    except StripeCallError as exc:
        raise ActionRefused(f"Stripe could not read payout {payout_id}: {exc.verdict.code}") from None
    problems = []
    if payout.status != PAID:
        problems.append(f"its status is {payout.status}, not paid")
    if payout.request_id != case.request_id:
        problems.append(f"its metadata names request {payout.request_id}")
    if (payout.amount, payout.currency) != (case.amount_minor, case.currency):
        problems.append(f"it is {payout.amount} {payout.currency}, the request {case.amount_minor} {case.currency}")
    if problems:
        raise ActionRefused(f"payout {payout_id} is not this request's paid payout: " + "; ".join(problems))
    with conn.transaction():
        taken = conn.execute(
            """SELECT 1 FROM investment.withdrawal_requests WHERE payout_id = %s AND id <> %s""",
            (payout_id, case.request_id)).fetchone()
        if taken:
            raise ActionRefused(f"payout {payout_id} is already another request's")
        conn.execute(
            """UPDATE investment.withdrawal_requests SET payout_id = %s, payout_status = %s, needs_operator = NULL,
                      operator_case = NULL, last_error = NULL, updated_at = now()
               WHERE id = %s AND status = 'processing'""", (payout_id, payout.status, case.request_id))
    done = complete(conn, [case.request_id])
    return "completed" if done["completed"] else "left for the balance: " + ("uncovered" if done["uncovered"] else
                                                                             "already changed")
