"""Step 5, summary: the run's counts per outcome and amounts per currency, and what is open in the
book; the run fails when a request needs a person or a step failed."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.jobs.decisions import decisions_of_run
from investment_jobs.jobs.withdrawals.state import WithdrawalsNeedOperator, amounts_by_currency, as_text

if TYPE_CHECKING:
    import psycopg


def book_state(conn: psycopg.Connection) -> dict[str, Any]:
    """What is open after the run, whoever left it: in flight, awaiting an operator or a transfer."""
    processing = conn.execute(
        """
        SELECT count(*) FILTER (WHERE payout_id IS NOT NULL AND needs_operator IS NULL),
               count(*) FILTER (WHERE payout_id IS NULL AND needs_operator IS NULL AND last_error IS NOT NULL)
        FROM investment.withdrawal_requests WHERE status = 'processing'
        """).fetchone()
    needing = conn.execute(
        """
        SELECT id::text, needs_operator FROM investment.withdrawal_requests
        WHERE status = 'processing' AND needs_operator IS NOT NULL ORDER BY id LIMIT %s
        """, (SUMMARY_ID_LIMIT,)).fetchall()
    needing_count = conn.execute(
        "SELECT count(*) FROM investment.withdrawal_requests WHERE status = 'processing' AND needs_operator IS NOT NULL"
    ).fetchone()[0]
    manual = conn.execute(
        """
        SELECT p.currency, count(*), sum(w.amount)
        FROM investment.withdrawal_requests w
        JOIN investment.accounts a ON a.id = w.account_id JOIN investment.products p ON p.id = a.product_id
        WHERE w.status = 'approved' AND w.withdrawal_method = 'bank_transfer'
        GROUP BY p.currency ORDER BY p.currency
        """).fetchall()
    held = conn.execute(
        """SELECT count(*) FROM investment.withdrawal_requests
           WHERE status = 'processing' AND review_status = 'pending_review'""").fetchone()[0]
    refused = conn.execute(
        "SELECT count(*) FROM investment.withdrawal_notifications WHERE status = 'refused'").fetchone()[0]
    conn.commit()
    return {
        "payouts_in_flight": processing[0],
        "awaiting_retry": processing[1],
        "needs_operator": needing_count,
        "needs_operator_requests": [{"withdrawal_request_id": rid, "why": why} for rid, why in needing],
        "awaiting_manual_transfer": sum(n for _, n, _ in manual),
        "awaiting_manual_transfer_amounts": {c: str(total) for c, _, total in manual},
        "notifications_refused": refused,
        "awaiting_review": held,
    }


def outcomes(steps: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The run's counts per outcome and amounts per currency, from the steps' own counts."""
    claim_, pay_, settle_, review_, reviewed_ = (steps.get(k) or {} for k in (
        "claim", "pay", "settle", "review_withdrawals", "pay_reviewed"))
    failed = amounts_by_currency()
    for part in (pay_.get("failed_amounts", {}), settle_.get("failed_amounts", {}),
                 reviewed_.get("failed_amounts", {})):
        for currency, amount in part.items():
            failed[currency] += Decimal(amount)
    return {
        "claimed": claim_.get("claimed", 0),
        "rejected": claim_.get("rejected", 0) + pay_.get("rejected", 0) + len(review_.get("declined", [])),
        "held_for_review": claim_.get("held_for_review", 0),
        "review": {"asked": review_.get("held", 0), "approved": review_.get("approved", []),
                   "declined": review_.get("declined", []), "decided_by": review_.get("decided_by"),
                   "timed_out": bool(review_.get("timed_out"))},
        "payouts_created": sum(p.get("payouts_created", 0) + p.get("payouts_found", 0) for p in (pay_, reviewed_)),
        "completed": settle_.get("completed", 0),
        "failed": pay_.get("failed", 0) + settle_.get("failed", 0) + reviewed_.get("failed", 0),
        "reversed": settle_.get("reversed", 0),
        "amounts": {"claimed": claim_.get("claimed_amounts", {}), "rejected": claim_.get("rejected_amounts", {}),
                    "completed": settle_.get("completed_amounts", {}), "failed": as_text(failed),
                    "reversed": settle_.get("reversed_amounts", {})},
    }


def check_outcome(summary: dict[str, Any]) -> None:
    """Fail the run when requests need an operator or payouts stayed ambiguous; both stay listed."""
    problems = []
    stuck = (summary.get("steps", {}).get("settle") or {}).get("transfers_not_given_back") or []
    if stuck:
        problems.append(f"{len(stuck)} returned Connect payout(s) whose transfer Stripe refused to reverse "
                        "(settle's transfers_not_given_back says why); the next run tries again")
    if summary.get("needs_operator"):
        problems.append(f"{summary['needs_operator']} withdrawal request(s) need an operator "
                        "(see needs_operator_requests)")
    if summary.get("steps_failed"):
        problems.append(f"step(s) {', '.join(summary['steps_failed'])} failed; requests they left in "
                        "processing are retried with the same idempotency key by the next run")
    if problems:
        raise WithdrawalsNeedOperator("; ".join(problems))


def summarise(conn: psycopg.Connection, run_id: str, steps: dict[str, dict[str, Any] | None],
              operator_cases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's summary from its steps' results (None: the step failed), the operator cases it
    asked about, and the book's open requests."""
    summary: dict[str, Any] = {"job_name": "withdrawal_processing", "run_id": run_id,
                               "steps_failed": [step for step, result in steps.items() if result is None],
                               **outcomes(steps), "steps": steps}
    summary["operator_cases"] = list(operator_cases or [])
    summary.update(book_state(conn))
    summary["decisions"] = decisions_of_run(conn, "withdrawal_processing", run_id)
    summary["processed"] = summary["claimed"] + summary["completed"]
    summary["error_count"] = summary["rejected"] + summary["failed"] + summary["needs_operator"]
    return summary
