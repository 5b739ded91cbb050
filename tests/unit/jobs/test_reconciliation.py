"""The reconciliation's comparison without Stripe or a database: one case per kind of difference."""

from __future__ import annotations

from decimal import Decimal

import pytest

from investment_jobs.jobs.reconciliation import Difference, OurRequest, balance_report, compare
from investment_jobs.stripe.calls import BalanceTransaction, Payout, Transfer


def ours(**changes) -> OurRequest:
    base = {"request_id": "r1", "status": "completed", "amount": Decimal("10.00"), "currency": "usd",
            "amount_minor": 1000, "connected_account": None, "payout_id": "po_1", "payout_on_day": True,
            "transfer_id": None, "transfer_on_day": False, "reversal_id": None, "ledger_amount": Decimal("10.00"),
            "ledger_status": "completed"}
    return OurRequest(**{**base, **changes})


def payout(**changes) -> Payout:
    return Payout(**{"id": "po_1", "amount": 1000, "currency": "usd", "status": "paid", "request_id": "r1", **changes})


def transfer(**changes) -> Transfer:
    return Transfer(**{"id": "tr_1", "amount": 1000, "currency": "usd", "destination": "acct_1", "request_id": "r1",
                       **changes})


def txn(type_: str, amount: int, source: str, fee: int = 0) -> BalanceTransaction:
    return BalanceTransaction(f"txn_{source}", amount, "usd", fee, amount - fee, type_, source, 1)


CONNECT = {"connected_account": "acct_1", "transfer_id": "tr_1", "transfer_on_day": True}


@pytest.mark.parametrize(("case", "stripe", "db", "expected"), [
    ("a clean platform payout", ([payout()], [], [txn("payout", -1000, "po_1")]), [ours()], []),
    ("a clean Connect payment", ([payout(account="acct_1")], [transfer()], [txn("transfer", -1000, "tr_1")]),
     [ours(**CONNECT)], []),
    ("a Connect payment given back", ([payout(status="failed", account="acct_1")],
                                      [transfer(amount_reversed=1000, reversal_ids=("trr_1",))],
                                      [txn("transfer", -1000, "tr_1"), txn("transfer_refund", 1000, "trr_1")]),
     [ours(**CONNECT, status="failed", reversal_id="trr_1", ledger_amount=None, ledger_status=None)], []),
    ("Stripe's amount changed", ([payout(amount=1001)], [], []), [ours()],
     [Difference("payout", "po_1", "amount", "10.01 usd", "10.00 usd", "r1")]),
    ("another currency", ([payout(currency="eur")], [], []), [ours()],
     [Difference("payout", "po_1", "currency", "eur", "usd", "r1")]),
    ("paid, not settled", ([payout()], [], []), [ours(status="processing", ledger_amount=None)],
     [Difference("payout", "po_1", "status", "paid", "processing", "r1")]),
    ("a payout nobody recorded", ([payout(id="po_2", request_id=None)], [], []), [],
     [Difference("payout", "po_2", "missing_in_database", "10.00 usd paid", None, None)]),
    ("a second payout for one request", ([payout(), payout(id="po_2")], [], []), [ours()],
     [Difference("payout", "po_2", "missing_in_database", "10.00 usd paid", "po_1", "r1")]),
    ("recorded, not at Stripe", ([], [], []), [ours()],
     [Difference("payout", "po_1", "missing_at_stripe", None, "10.00 usd completed", "r1")]),
    ("a ledger row of another amount", ([payout()], [], []), [ours(ledger_amount=Decimal("1.00"))],
     [Difference("payout", "po_1", "ledger", "10.00 usd", "1.00 usd completed", "r1")]),
    ("a transfer reversed outside the job", ([payout(status="paid", account="acct_1")],
                                             [transfer(amount_reversed=1000)], []), [ours(**CONNECT)],
     [Difference("transfer", "tr_1", "status", "reversed", "no reversal recorded", "r1")]),
    ("a transfer nobody recorded", ([], [transfer(id="tr_9", request_id=None)], []), [],
     [Difference("transfer", "tr_9", "missing_in_database", "10.00 usd", None, None)]),
    ("a balance movement not ours", ([], [], [txn("payout", -500, "po_x")]), [],
     [Difference("balance", "txn_po_x", "missing_in_database", "payout -5.00 usd from po_x", None)]),
    ("a balance movement of another amount", ([payout()], [], [txn("payout", -900, "po_1")]), [ours()],
     [Difference("balance", "txn_po_1", "amount", "payout -9.00 usd", "-10.00 usd", "r1")]),
    ("charges and fees are not withdrawals", ([payout()], [], [txn("payout", -1000, "po_1"),
                                                              txn("charge", 5000, "ch_1", fee=175)]), [ours()], []),
])
def test_each_kind_of_difference(case, stripe, db, expected) -> None:
    assert compare(*stripe, db) == expected, case


def test_the_balance_report_is_per_currency_in_major_units() -> None:
    fees, change = balance_report([txn("payout", -1000, "po_1", fee=25), txn("transfer_refund", 300, "trr_1"),
                                   BalanceTransaction("txn_j", -500, "jpy", 0, -500, "payout", "po_j", 1)])
    assert fees == {"jpy": "0", "usd": "0.25"}
    assert change == {"jpy": {"amount": "-500", "fee": "0", "net": "-500"},
                      "usd": {"amount": "-7.00", "fee": "0.25", "net": "-7.25"}}
