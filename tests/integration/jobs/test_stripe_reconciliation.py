"""stripe_reconciliation: a day's Stripe records against the database, on a clean day and with
differences planted in the stand-in's own records."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.support.airflow_runs import run_dag
from tests.support.paths import STRIPE_TEST_KEY
from tests.support.withdrawals import accounts_by_currency, add_request, requests

pytestmark = pytest.mark.integration

RUN_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def today() -> date:
    """The stand-in stamps objects with its own clock: the business date under test is today (UTC)."""
    return datetime.now(UTC).date()  # clock-ok: the stand-in's objects are created now


def reconcile(day: date | None = None) -> dict:
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.reconciliation import reconcile as reconcile_day
    from investment_jobs.stripe.hook import StripeHook

    with connect() as conn:
        return reconcile_day(conn, StripeHook().get_conn(), day or today(), "UTC", "test-run")


def differences(book) -> set[tuple]:
    return set(book.query("""SELECT object_type, kind, stripe_value, database_value
                             FROM investment.stripe_reconciliation_differences"""))


@pytest.fixture
def paid_day(book, stripe_standin, airflow_db):
    """A day with platform payouts, Connect payments, and a Connect payout that failed after paid."""
    stripe = stripe_standin
    accounts = accounts_by_currency(book)
    usd = accounts["usd"]
    stripe.connected_accounts(*({"id": f"acct_{a[0][:8]}", "external_accounts": [f"ba_{a[0][:8]}"]} for a in usd))
    ids = {"platform": add_request(book, usd[0], "10.00"),
           "connect": add_request(book, usd[1], "20.00", destination={"stripe_account": f"acct_{usd[1][0][:8]}"},
                                  created_offset=1),
           "returned": add_request(book, usd[2], "30.00", destination={"stripe_account": f"acct_{usd[2][0][:8]}"},
                                   created_offset=2)}
    for currency, rows in accounts.items():
        if currency != "usd":
            ids[currency] = add_request(book, rows[0], {"jpy": "500", "kwd": "1.250"}.get(currency, "4.00"))
    assert str(run_dag("withdrawal_processing", RUN_AT).state) == "success"
    stripe.set_payout(requests(book)[ids["returned"]]["payout_id"], status="failed", failure_code="account_closed")
    assert str(run_dag("withdrawal_processing", RUN_AT).state) == "success"
    assert requests(book)[ids["returned"]]["status"] == "failed"
    return book, stripe, ids


def test_a_clean_day_has_no_difference_and_reports_fees_and_the_balance_change(paid_day):
    book, stripe, ids = paid_day
    summary = reconcile()
    assert summary["differences"] == 0, summary["first_differences"]
    assert summary["transfers_at_stripe"] == 2 and summary["connected_accounts"] == 2
    assert summary["payouts_at_stripe"] == len(ids)
    assert summary["requests_compared"] == len(ids)
    # the platform's usd: −10 (payout) −20 −30 (transfers) +30 (the returned one given back)
    assert summary["balance_change"]["usd"] == {"amount": "-30.00", "fee": "0.00", "net": "-30.00"}
    assert differences(book) == set()
    row = book.query("SELECT differences, payouts_at_stripe FROM investment.stripe_reconciliations")
    assert row == [(0, len(ids))]


def test_planted_differences_are_found_with_both_values(paid_day):
    import stripe as stripe_lib

    book, stripe, ids = paid_day
    stripe.set_payout(requests(book)[ids["platform"]]["payout_id"], amount=1001)  # Stripe's record changed
    client = stripe_lib.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stripe.url})
    stray = client.v1.payouts.create(params={"amount": 777, "currency": "usd", "destination": "ba_somewhere"})
    summary = reconcile()
    found = differences(book)
    assert ("payout", "amount", "10.01 usd", "10.00 usd") in found
    assert ("payout", "missing_in_database", "7.77 usd paid", None) in found
    assert ("balance", "missing_in_database", f"payout -7.77 usd from {stray.id}", None) in found
    assert summary["differences"] == len(found) == 3
    assert summary["differences_by_kind"] == {"balance.missing_in_database": 1, "payout.amount": 1,
                                              "payout.missing_in_database": 1}
    again = reconcile()  # a rerun replaces the day's report
    assert again["differences"] == 3 and len(differences(book)) == 3


def test_a_payout_stripe_paid_that_the_database_has_not_settled_is_a_status_difference(book, stripe_standin,
                                                                                         airflow_db):
    stripe = stripe_standin
    stripe.faults(hold=True)
    request_id = add_request(book, accounts_by_currency(book)["usd"][0], "3.00")
    assert str(run_dag("withdrawal_processing", RUN_AT).state) == "success"
    stripe.advance()
    stripe.faults(hold=False)
    summary = reconcile()
    assert ("payout", "status", "paid", "processing") in differences(book)
    assert summary["differences"] == 1
    assert summary["first_differences"][0]["withdrawal_request_id"] == request_id
    assert str(run_dag("withdrawal_processing", RUN_AT).state) == "success"  # settle catches up
    assert reconcile()["differences"] == 0


def test_the_dag_reconciles_one_ended_date_and_fails_above_the_tolerance(book, stripe_standin, airflow_db,
                                                                          monkeypatch):
    from investment_jobs.jobs.reconciliation import ReconciliationDifferences, check_tolerance

    yesterday = today() - timedelta(days=1)
    run = run_dag("stripe_reconciliation", datetime(yesterday.year, yesterday.month, yesterday.day, 2, tzinfo=UTC))
    assert str(run.state) == "success"
    assert book.query("SELECT business_date, differences FROM investment.stripe_reconciliations") == [(yesterday, 0)]
    with pytest.raises(ReconciliationDifferences, match="2 difference"):
        check_tolerance({"differences": 2, "business_date": "2026-01-05", "differences_by_kind": {}}, 1)
    check_tolerance({"differences": 1, "business_date": "2026-01-05", "differences_by_kind": {}}, 1)
    now = datetime.now(UTC)  # clock-ok: a day that has not ended is refused
    assert str(run_dag("stripe_reconciliation", datetime(now.year, now.month, now.day, 2, tzinfo=UTC)).state) == "failed"


def test_the_schema_takes_exactly_the_kinds_of_difference_the_job_writes(investment_db):
    """Migration 0011: the kinds in the CHECK are those ``reconciliation`` constructs (read from its
    source), so ``balance_change``, a figure of the day and never a difference, is refused."""
    import re
    from pathlib import Path

    import psycopg

    from investment_jobs.jobs import reconciliation

    source = Path(reconciliation.__file__).read_text()
    written = set(re.findall(r'Difference\([\w"]+, [^,]+, "(\w+)"', source))
    with psycopg.connect(investment_db) as conn:
        check = conn.execute("""SELECT pg_get_constraintdef(oid) FROM pg_constraint
                                WHERE conname = 'stripe_reconciliation_differences_kind_check'""").fetchone()[0]
        conn.execute("""INSERT INTO investment.stripe_reconciliations (business_date, run_id, payouts_at_stripe,
                            transfers_at_stripe, requests_compared, differences) VALUES ('2026-01-05', 't', 0, 0, 0, 0)""")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("""INSERT INTO investment.stripe_reconciliation_differences (business_date, object_type,
                                object_id, kind) VALUES ('2026-01-05', 'balance', 'txn_1', 'balance_change')""")
    assert set(re.findall(r"'(\w+)'::text", check)) == written == {
        "missing_in_database", "missing_at_stripe", "amount", "currency", "status", "ledger"}
