"""Connect withdrawals: a transfer to the investor's connected account, then a payout on it.

Against real PostgreSQL and the Stripe stand-in's own records: exactly one transfer and one
payout per request whatever line a run dies at, a failed payout's transfer given back exactly
once, and every balance conserved (the platform's, each connected account's, each investor's).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.support.airflow_runs import run_dag
from tests.support.withdrawals import accounts_by_currency, add_request, balances, requests, two_runs_at_once

pytestmark = pytest.mark.integration

RUN_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PLATFORM_BALANCE = 10**9


def run():
    return run_dag("withdrawal_processing", RUN_AT)


def _client():
    from investment_jobs.stripe.hook import StripeHook

    return StripeHook().get_conn()


@pytest.fixture
def desk(book, stripe_standin, airflow_db):
    """The book, the stand-in with one connected account per usd account, and the starting balances."""
    stripe_standin.balance(usd=PLATFORM_BALANCE)
    accounts = accounts_by_currency(book)["usd"]
    stripe_standin.connected_accounts(*({"id": f"acct_{a[0][:8]}", "external_accounts": [f"ba_{a[0][:8]}"]}
                                        for a in accounts))
    return book, stripe_standin, accounts, balances(book)


def connect_request(book, account, amount: str, *, bank: str | None = "default", offset: int = 0) -> str:
    details = {"stripe_account": f"acct_{account[0][:8]}"}
    if bank is not None:
        details["bank_account_id"] = f"ba_{account[0][:8]}" if bank == "default" else bank
    return add_request(book, account, amount, destination=details, created_offset=offset)


def assert_conserved(book, stripe, initial: dict[str, Decimal]) -> None:
    """One transfer and at most one payout per request; the money where the records say it is."""
    transfers, payouts, reversals = stripe.transfers(), stripe.payouts(), stripe.reversals()
    per_request = Counter(t["metadata"]["withdrawal_request_id"] for t in transfers)
    assert all(n == 1 for n in per_request.values()), f"a second transfer: {per_request}"
    paid = Counter(p["metadata"]["withdrawal_request_id"] for p in payouts)
    assert all(n == 1 for n in paid.values()), f"a second payout: {paid}"
    assert Counter(r["transfer"] for r in reversals) <= Counter(t["id"] for t in transfers)
    # Each connected account got exactly what was paid out of it, or gave it back.
    for account in stripe.connected_accounts():
        assert all(v == 0 for v in account["balance"].values()), account
    given = sum(t["amount"] for t in transfers) - sum(r["amount"] for r in reversals)
    made = [p for p in payouts if p["status"] not in ("failed", "canceled")]
    assert sum(p["amount"] for p in made if p["account"]) == given
    from_platform = sum(p["amount"] for p in made if not p["account"])
    assert stripe.stats()["available"]["usd"] == PLATFORM_BALANCE - given - from_platform
    paid_out = given + from_platform
    # The investors: balance moved by what reached their bank, once, with a ledger row.
    now = balances(book)
    moved = sum(initial[a] - now[a] for a in initial)
    assert moved == Decimal(paid_out) / 100
    ledger = book.query("""SELECT coalesce(sum(CASE WHEN type = 'withdrawal' THEN amount ELSE -amount END), 0)
                           FROM investment.transactions WHERE type IN ('withdrawal', 'withdrawal_reversal')""")
    assert ledger[0][0] == moved


def test_a_connect_withdrawal_is_a_transfer_then_a_payout_on_the_connected_account(desk):
    book, stripe, accounts, initial = desk
    connect_id = connect_request(book, accounts[0], "120.50")
    default_bank = connect_request(book, accounts[1], "3.00", bank=None)
    platform_id = add_request(book, accounts[2], "7.00")
    assert str(run().state) == "success"
    states = requests(book)
    assert {states[r]["status"] for r in (connect_id, default_bank, platform_id)} == {"completed"}
    transfers = {t["metadata"]["withdrawal_request_id"]: t for t in stripe.transfers()}
    assert set(transfers) == {connect_id, default_bank}
    assert (transfers[connect_id]["amount"], transfers[connect_id]["destination"]) == (12050, f"acct_{accounts[0][0][:8]}")
    assert transfers[connect_id]["transfer_group"] == f"withdrawal-{connect_id}"
    payouts = {p["metadata"]["withdrawal_request_id"]: p for p in stripe.payouts()}
    assert payouts[connect_id]["account"] == f"acct_{accounts[0][0][:8]}"
    assert payouts[default_bank]["destination"] == f"ba_{accounts[1][0][:8]}"  # the account's default
    assert payouts[platform_id]["account"] is None
    keys = {(r["account"], r["idempotency_key"]) for r in stripe.requests()}
    assert (None, f"withdrawal-{connect_id}-transfer") in keys
    assert (f"acct_{accounts[0][0][:8]}", f"withdrawal-{connect_id}-payout") in keys
    assert (None, f"withdrawal-{platform_id}") in keys
    row = book.query("SELECT transfer_id, connected_account_id FROM investment.withdrawal_requests WHERE id = %s",
                     (connect_id,))[0]
    assert row == (transfers[connect_id]["id"], f"acct_{accounts[0][0][:8]}")
    assert_conserved(book, stripe, initial)


def test_an_unknown_connected_account_fails_the_request_before_money_moves(desk):
    book, stripe, accounts, initial = desk
    request_id = add_request(book, accounts[0], "5.00", destination={"stripe_account": "acct_nobody"})
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert (state["status"], state["failure_code"]) == ("failed", "resource_missing")
    assert stripe.transfers() == [] and stripe.payouts() == []
    assert balances(book) == initial


# --- a crash at each line of the two steps ------------------------------------------------------------
CRASH_POINTS = {
    "after the attempt was committed, before the transfer call": ("create_transfer", "before"),
    "after Stripe made the transfer, before our commit": ("record_transfer", "before"),
    "after the transfer was committed, before the payout call": ("create_payout", "before"),
    "after Stripe made the payout, before our commit": ("record_payout", "before"),
    "after the payout was committed, before settle": ("record_payout", "after"),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
@pytest.mark.parametrize("key_window", ["within Stripe's key window", "past it"])
def test_a_crash_at_each_step_is_finished_by_the_next_run_with_one_transfer_and_one_payout(
        desk, monkeypatch, point, key_window):
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, pay

    book, stripe, accounts, initial = desk
    ids = [connect_request(book, a, "10.00", offset=i) for i, a in enumerate(accounts)]
    name, when = CRASH_POINTS[point]
    real = getattr(pay, name)

    def crash(*args, **kwargs):
        if when == "after":
            real(*args, **kwargs)
        raise SystemExit(f"killed {point}")

    with monkeypatch.context() as patch, connect() as conn, pytest.raises(SystemExit):
        patch.setattr(pay, name, crash)
        claim.claim_requests(conn, "crashed-run", 100)
        pay.pay_requests(conn, _client(), timedelta(hours=23))
    if key_window == "past it":
        stripe.forget_keys()  # Stripe no longer replays: the next run must look the object up
        with connect() as conn:
            conn.execute("UPDATE investment.withdrawal_requests SET first_attempt_at = now() - interval '2 days'")
            conn.commit()
    assert str(run().state) == "success"
    assert {requests(book)[r]["status"] for r in ids} == {"completed"}
    assert len(stripe.transfers()) == len(ids) and len(stripe.payouts()) == len(ids)
    assert_conserved(book, stripe, initial)


# --- payouts that fail: the transfer is given back once ----------------------------------------------
def test_a_payout_refused_at_once_gives_the_transfer_back_once_and_fails(desk):
    book, stripe, accounts, initial = desk
    request_id = connect_request(book, accounts[0], "25.00", bank="ba_not_on_file")
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert (state["status"], state["failure_code"]) == ("failed", "resource_missing")
    assert len(stripe.transfers()) == 1 and stripe.payouts() == []
    assert len(stripe.reversals()) == 1
    assert str(run().state) == "success"  # a rerun gives nothing back twice
    assert len(stripe.reversals()) == 1
    assert balances(book) == initial
    assert_conserved(book, stripe, initial)


def test_a_payout_that_fails_after_paid_reverses_the_transfer_once_and_credits_the_investor(desk):
    book, stripe, accounts, initial = desk
    request_id = connect_request(book, accounts[0], "40.00")
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    stripe.set_payout(requests(book)[request_id]["payout_id"], status="failed", failure_code="account_closed",
                      failure_message="The bank account has been closed.")
    assert str(run().state) == "success"
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert (state["status"], state["failure_code"]) == ("failed", "account_closed")
    assert len(stripe.reversals()) == 1
    assert balances(book) == initial
    types = [r[0] for r in book.query("SELECT type FROM investment.transactions ORDER BY created_at")]
    assert types == ["withdrawal", "withdrawal_reversal"]
    assert_conserved(book, stripe, initial)


def test_a_crash_after_the_reversal_call_records_the_reversal_stripe_made(desk, monkeypatch):
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, pay, settle
    from investment_jobs.jobs.withdrawals import connect as connect_step

    book, stripe, accounts, initial = desk
    request_id = connect_request(book, accounts[0], "9.00", bank="ba_not_on_file")
    real = connect_step.reverse_transfer

    def reverse_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit("killed after Stripe reversed the transfer")

    with monkeypatch.context() as patch, connect() as conn, pytest.raises(SystemExit):
        patch.setattr(connect_step, "reverse_transfer", reverse_then_die)
        claim.claim_requests(conn, "crashed-run", 100)
        pay.pay_requests(conn, _client(), timedelta(hours=23))  # the payout is refused for good
        settle.settle_payouts(conn, _client(), timedelta(days=10))
    assert requests(book)[request_id]["status"] == "processing"
    assert len(stripe.reversals()) == 1
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "failed"
    assert len(stripe.reversals()) == 1
    assert_conserved(book, stripe, initial)


def test_two_runs_at_once_make_one_transfer_and_one_payout_per_request(desk):
    book, stripe, accounts, initial = desk
    ids = [connect_request(book, a, "2.00", offset=i * 10 + k) for i, a in enumerate(accounts) for k in range(3)]
    two_runs_at_once(first_batch=5)
    assert str(run().state) == "success"  # whatever one run skipped (locked), the next finishes
    assert {requests(book)[r]["status"] for r in ids} == {"completed"}
    assert len(stripe.transfers()) == len(ids) and len(stripe.payouts()) == len(ids)
    assert_conserved(book, stripe, initial)


# --- a transfer Stripe will not give back ----------------------------------------------------------------
def test_a_refused_payout_whose_transfer_cannot_be_given_back_waits_for_an_operator_then_retries(desk):
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import operator_cases

    book, stripe, accounts, initial = desk
    stripe.faults(refuse_reversals=True)
    request_id = connect_request(book, accounts[0], "6.00", bank="ba_not_on_file")
    assert str(run().state) == "failed"  # a request needs an operator
    state = requests(book)[request_id]
    assert state["status"] == "processing" and "refused to reverse transfer" in state["needs_operator"]
    with connect() as conn:
        case = operator_cases.case_of(conn, request_id)
        assert case.case == "transfer_unreversed" and case.options()[1:] == [operator_cases.RETRY]
        stripe.faults()  # the connected account can cover it again
        operator_cases.retry(conn, case)
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "failed" and len(stripe.reversals()) == 1
    assert_conserved(book, stripe, initial)


def test_a_returned_payout_whose_transfer_cannot_be_given_back_fails_the_run_until_it_is(desk):
    book, stripe, accounts, initial = desk
    request_id = connect_request(book, accounts[0], "8.00")
    assert str(run().state) == "success"
    stripe.set_payout(requests(book)[request_id]["payout_id"], status="failed", failure_code="account_closed")
    stripe.faults(refuse_reversals=True)
    assert str(run().state) == "failed"
    assert requests(book)[request_id]["status"] == "completed"  # nothing booked before the money is back
    stripe.faults()
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "failed" and len(stripe.reversals()) == 1
    assert balances(book) == initial
    assert_conserved(book, stripe, initial)
