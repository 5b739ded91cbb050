"""stripe_reconciliation: one business date's Stripe payouts, transfers and balance movements
against our withdrawal requests and their ``withdrawal`` transactions.

Stripe says that for payouts made by API the platform reconciles them. For D (in
``CRON_TIMEZONE``) this reads, as Stripe reports them, every payout created on D (the platform's,
and on each connected account our requests use), every transfer, and the platform's balance
transactions (with their fees), and compares them with what the database recorded:

- an object Stripe has that no request recorded (``missing_in_database``: a payout made outside
  the job, or a second payout for one request), one a request recorded for D that Stripe does not
  list (``missing_at_stripe``);
- per matched object: ``amount`` and ``currency`` (Stripe's minor units against the request's),
  ``status`` (paid ↔ completed, failed/canceled ↔ failed, on its way ↔ processing; a transfer
  reversed ↔ its reversal recorded), and ``ledger`` (a completed request's ``withdrawal``
  transaction is its amount, completed);
- balance transactions of payouts, transfers and their returns whose source is not ours, or
  whose amount is not what our record moved.

Each difference is a row with both values. A rerun of D replaces D's rows in one transaction, so
the table always says what the last run found. The run warns below
``STRIPE_RECONCILIATION_TOLERANCE`` differences (0) and fails above it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.money import currency as currency_of

if TYPE_CHECKING:
    import psycopg
    from stripe import StripeClient

    from investment_jobs.stripe.calls import BalanceTransaction, Payout, Transfer

EXPECTED_REQUEST_STATUS = {"paid": "completed", "failed": "failed", "canceled": "failed",
                           "pending": "processing", "in_transit": "processing"}
# Balance transaction types that move a withdrawal's money, and the sign our record gives them.
MOVEMENTS = {"payout": -1, "transfer": -1, "transfer_refund": 1, "payout_failure": 1, "payout_cancel": 1}


class ReconciliationDifferences(Exception):
    """More differences than STRIPE_RECONCILIATION_TOLERANCE: a person must look."""


@dataclass(frozen=True)
class OurRequest:
    """What the database recorded of one withdrawal request that touched Stripe."""

    request_id: str
    status: str
    amount: Decimal
    currency: str
    amount_minor: int
    connected_account: str | None
    payout_id: str | None
    payout_on_day: bool
    transfer_id: str | None
    transfer_on_day: bool
    reversal_id: str | None
    ledger_amount: Decimal | None
    ledger_status: str | None


@dataclass(frozen=True)
class Difference:
    object_type: str  # payout, transfer or balance
    object_id: str
    kind: str
    stripe_value: str | None
    database_value: str | None
    withdrawal_request_id: str | None = None


def major(minor: int, currency: str) -> Decimal:
    """Stripe's integer amount in the currency's major unit, by Stripe's own exponent."""
    return Decimal(minor).scaleb(-currency_of(currency).stripe_exponent)


def _money(minor: int, currency: str) -> str:
    return f"{major(minor, currency)} {currency}"


def compare(payouts: list[Payout], transfers: list[Transfer], balance: list[BalanceTransaction],
            ours: list[OurRequest]) -> list[Difference]:
    """Every difference between Stripe's records of D and ours. Pure."""
    out: list[Difference] = []
    by_payout = {r.payout_id: r for r in ours if r.payout_id}
    by_transfer = {r.transfer_id: r for r in ours if r.transfer_id}
    by_request = {r.request_id: r for r in ours}
    for p in payouts:
        r = by_payout.get(p.id)
        if r is None:
            named = by_request.get(p.request_id or "")
            out.append(Difference("payout", p.id, "missing_in_database", f"{_money(p.amount, p.currency)} {p.status}",
                                  named.payout_id if named else None, named.request_id if named else p.request_id))
            continue
        out += _compare_amounts("payout", p.id, p.amount, p.currency, r)
        expected = EXPECTED_REQUEST_STATUS.get(p.status)
        if expected is not None and r.status != expected:
            out.append(Difference("payout", p.id, "status", p.status, r.status, r.request_id))
        if r.status == "completed" and (r.ledger_amount != r.amount or r.ledger_status != "completed"):
            out.append(Difference("payout", p.id, "ledger", _money(p.amount, p.currency),
                                  f"{r.ledger_amount} {r.currency} {r.ledger_status}", r.request_id))
    seen_payouts = {p.id for p in payouts}
    out += [Difference("payout", r.payout_id, "missing_at_stripe", None, f"{r.amount} {r.currency} {r.status}",
                       r.request_id) for r in ours if r.payout_on_day and r.payout_id not in seen_payouts]
    for t in transfers:
        r = by_transfer.get(t.id)
        if r is None:
            named = by_request.get(t.request_id or "")
            out.append(Difference("transfer", t.id, "missing_in_database", _money(t.amount, t.currency),
                                  named.transfer_id if named else None, named.request_id if named else t.request_id))
            continue
        out += _compare_amounts("transfer", t.id, t.amount, t.currency, r)
        reversed_at_stripe = t.amount_reversed >= t.amount
        if reversed_at_stripe != (r.reversal_id is not None):
            out.append(Difference("transfer", t.id, "status", "reversed" if reversed_at_stripe else "not reversed",
                                  "reversal recorded" if r.reversal_id else "no reversal recorded", r.request_id))
    seen_transfers = {t.id for t in transfers}
    out += [Difference("transfer", r.transfer_id, "missing_at_stripe", None, f"{r.amount} {r.currency}",
                       r.request_id) for r in ours if r.transfer_on_day and r.transfer_id not in seen_transfers]
    by_reversal = {r.reversal_id: r for r in ours if r.reversal_id}
    for txn in balance:
        sign = MOVEMENTS.get(txn.type)
        if sign is None:
            continue
        r = by_payout.get(txn.source) or by_transfer.get(txn.source) or by_reversal.get(txn.source)
        if r is None or (r.connected_account is not None and txn.type.startswith("payout")):
            out.append(Difference("balance", txn.id, "missing_in_database",
                                  f"{txn.type} {_money(txn.amount, txn.currency)} from {txn.source}", None))
        elif txn.amount != sign * r.amount_minor or txn.currency != r.currency:
            out.append(Difference("balance", txn.id, "amount", f"{txn.type} {_money(txn.amount, txn.currency)}",
                                  _money(sign * r.amount_minor, r.currency), r.request_id))
    return out


def _compare_amounts(object_type: str, object_id: str, amount: int, currency: str, r: OurRequest) -> list[Difference]:
    out = []
    if currency != r.currency:
        out.append(Difference(object_type, object_id, "currency", currency, r.currency, r.request_id))
    elif amount != r.amount_minor:
        out.append(Difference(object_type, object_id, "amount", _money(amount, currency),
                              _money(r.amount_minor, r.currency), r.request_id))
    return out


def balance_report(balance: list[BalanceTransaction]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Per currency, Stripe's fees and the platform's balance change on D (amount, fee, net), in
    major units. Pure."""
    fees: dict[str, int] = defaultdict(int)
    change: dict[str, dict[str, int]] = defaultdict(lambda: {"amount": 0, "fee": 0, "net": 0})
    for txn in balance:
        fees[txn.currency] += txn.fee
        for name in ("amount", "fee", "net"):
            change[txn.currency][name] += getattr(txn, name)
    return ({c: str(major(v, c)) for c, v in sorted(fees.items())},
            {c: {k: str(major(v, c)) for k, v in sorted(row.items())} for c, row in sorted(change.items())})


OURS = """
    SELECT w.id::text, w.status, w.amount, w.currency, w.payout_amount_minor, w.connected_account_id,
           w.payout_id, coalesce(w.payout_created_at >= %(start)s AND w.payout_created_at < %(end)s, false),
           w.transfer_id, coalesce(w.transfer_created_at >= %(start)s AND w.transfer_created_at < %(end)s, false),
           w.transfer_reversal_id, t.amount, t.status
    FROM investment.withdrawal_requests w
    LEFT JOIN investment.transactions t ON t.id = w.transaction_id
    WHERE w.currency IS NOT NULL AND (
          (w.payout_created_at >= %(start)s AND w.payout_created_at < %(end)s)
       OR (w.transfer_created_at >= %(start)s AND w.transfer_created_at < %(end)s)
       OR w.payout_id = ANY(%(payouts)s) OR w.transfer_id = ANY(%(transfers)s)
       OR w.transfer_reversal_id = ANY(%(sources)s) OR w.payout_id = ANY(%(sources)s)
       OR w.transfer_id = ANY(%(sources)s) OR w.id::text = ANY(%(named)s))
"""


def reconcile(conn: psycopg.Connection, client: StripeClient, day: date, tz: str, run_id: str) -> dict[str, Any]:
    """Read D at Stripe, compare, and replace D's report in one transaction; the run's counts."""
    from investment_jobs.business_dates import end_of_business_date, start_of_business_date
    from investment_jobs.stripe.calls import (
        balance_transactions_between,
        payouts_created_between,
        transfers_created_between,
    )

    start, end = start_of_business_date(day, tz), end_of_business_date(day, tz)
    transfers = list(transfers_created_between(client, start, end))
    payouts = list(payouts_created_between(client, start, end))
    balance = list(balance_transactions_between(client, start, end))
    accounts = {t.destination for t in transfers} | {r[0] for r in conn.execute(
        """SELECT DISTINCT connected_account_id FROM investment.withdrawal_requests
           WHERE connected_account_id IS NOT NULL AND (payout_created_at >= %s AND payout_created_at < %s
                 OR transfer_created_at >= %s AND transfer_created_at < %s)""", (start, end, start, end)).fetchall()}
    for account in sorted(accounts):
        payouts += list(payouts_created_between(client, start, end, stripe_account=account))
    named = sorted({p.request_id for p in payouts if p.request_id} | {t.request_id for t in transfers if t.request_id})
    rows = conn.execute(OURS, {"start": start, "end": end, "payouts": [p.id for p in payouts],
                               "transfers": [t.id for t in transfers], "sources": [b.source for b in balance],
                               "named": named}).fetchall()
    ours = [OurRequest(*row) for row in rows]
    differences = compare(payouts, transfers, balance, ours)
    fees, change = balance_report(balance)
    with conn.transaction():
        conn.execute("DELETE FROM investment.stripe_reconciliations WHERE business_date = %s", (day,))
        conn.execute(
            """INSERT INTO investment.stripe_reconciliations (business_date, run_id, payouts_at_stripe,
                   transfers_at_stripe, requests_compared, differences, fees, balance_change)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (day, run_id, len(payouts), len(transfers), len(ours), len(differences), json.dumps(fees),
             json.dumps(change)))
        conn.cursor().executemany(
            """INSERT INTO investment.stripe_reconciliation_differences (business_date, object_type, object_id,
                   withdrawal_request_id, kind, stripe_value, database_value)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            [(day, d.object_type, d.object_id, d.withdrawal_request_id, d.kind, d.stripe_value, d.database_value)
             for d in differences])
    return {"business_date": day.isoformat(), "run_id": run_id, "payouts_at_stripe": len(payouts),
            "transfers_at_stripe": len(transfers), "balance_transactions": len(balance),
            "connected_accounts": len(accounts), "requests_compared": len(ours),
            "differences": len(differences), "differences_by_kind": _by_kind(differences),
            "first_differences": [asdict(d) for d in differences[:SUMMARY_ID_LIMIT]],
            "fees": fees, "balance_change": change}


def _by_kind(differences: list[Difference]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for d in differences:
        counts[f"{d.object_type}.{d.kind}"] += 1
    return dict(sorted(counts.items()))


def check_tolerance(summary: dict[str, Any], tolerance: int) -> None:
    if summary["differences"] > tolerance:
        raise ReconciliationDifferences(
            f"{summary['differences']} difference(s) between Stripe and the database for {summary['business_date']} "
            f"(tolerance {tolerance}): {summary['differences_by_kind']}; the run's summary lists them with Stripe's "
            "value and ours (first_differences); fix the cause, then rerun this date (Clear)")
