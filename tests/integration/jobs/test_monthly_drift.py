"""A distributed month whose days drifted, corrected by an operator's decision (issue 15): the
adjustment is computed at the month's own rate, posted once per account, and the drift check is
clean again. Real PostgreSQL; the Required Action itself is answered on a real scheduler."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest

from investment_jobs.business_dates import Period
from investment_jobs.fees import performance_fee
from investment_jobs.jobs import decisions, monthly, monthly_drift
from tests.support.airflow_runs import run_dag, task_states
from tests.support.book import Book, fill_days

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

JANUARY = Period(2026, 1)


def decision(choice: str, key: str) -> decisions.Decision:
    return decisions.Decision(key=key, decided_by="ana", dag_id="monthly_distribution", run_id=key,
                              task_id="resolve_drift", kind="distribution_drift", choice=choice, outcome="applied",
                              period="2026-01")


def drift_now(book: Book) -> list[monthly_drift.Proposal]:
    run = monthly.reference_for(JANUARY, "look")
    with psycopg.connect(book.dsn) as conn:
        monthly.assess_accounts(conn, run, "UTC")
        found = monthly_drift.proposals(conn, run)
        monthly.drop_staging(conn, run)
    return found


@pytest.fixture
def drifted(book: Book) -> tuple[Book, list[str]]:
    """January distributed, then two profitable usd accounts' last day rerun with +5.00."""
    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    assert str(run_dag("monthly_distribution", date(2026, 1, 1)).state) == "success"
    accounts = [r[0] for r in book.query("""SELECT d.account_id::text FROM investment.distributions d
        JOIN investment.products p ON p.id = d.product_id WHERE d.status = 'distributed' AND p.currency = 'usd'
        ORDER BY 1 LIMIT 2""")]
    with book.connect() as conn:
        conn.execute("""UPDATE investment.daily_performance SET daily_return = daily_return + 5,
                        closing_balance = closing_balance + 5 WHERE account_id = ANY(%s::uuid[])
                        AND date = '2026-01-31'""", (accounts,))
    return book, accounts


def test_a_correcting_adjustment_is_the_recomputed_net_minus_the_paid_one(drifted) -> None:  # noqa: ANN001
    book, accounts = drifted
    items = drift_now(book)
    assert [p.account_id for p in items] == sorted(accounts)
    rows = {r[0]: r[1:] for r in book.query("""SELECT d.account_id::text, d.net_profit, d.performance_fee_percentage,
        d.fee_model, a.total_profit_distributed FROM investment.distributions d
        JOIN investment.accounts a ON a.id = d.account_id WHERE d.account_id = ANY(%s::uuid[])""", (accounts,))}
    for p in items:
        paid, rate, model, _ = rows[p.account_id]
        want = performance_fee(p.was[0] + 5, rate, "usd", model)
        assert p.now[0] == p.was[0] + 5 and (p.now[3], p.now[4]) == (want.fee, want.net)
        assert p.net_delta == want.net - paid and p.now[3] + p.now[4] == p.now[0]
    page = monthly_drift.render(items, "2026-01")
    assert all(a in page for a in accounts) and "Δ net by currency: usd" in page

    with psycopg.connect(book.dsn) as conn:
        done = monthly_drift.apply(conn, "2026-01", items, monthly_drift.POST, decision(monthly_drift.POST, "k1"))
        again = monthly_drift.apply(conn, "2026-01", items, monthly_drift.POST, decision(monthly_drift.POST, "k1"))
    assert sorted(done["corrected"]) == sorted(accounts) and again["corrected"] == []
    assert sorted(again["changed_meanwhile"]) == sorted(accounts)  # the figures shown are no longer effective
    ledger = dict(book.query("""SELECT account_id::text, amount FROM investment.transactions
                                WHERE type = 'adjustment' AND distribution_period = '2026-01'"""))
    totals = dict(book.query("SELECT id::text, total_profit_distributed FROM investment.accounts"))
    for p in items:
        assert ledger[p.account_id] == abs(p.net_delta)
        assert totals[p.account_id] == rows[p.account_id][3] + p.net_delta
    assert Decimal(done["net_delta_by_currency"]["usd"]) == sum(p.net_delta for p in items)

    assert drift_now(book) == []  # the check is clean: a rerun of the month succeeds
    dag_run = run_dag("monthly_distribution", date(2026, 1, 1))
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert book.query("SELECT count(*) FROM investment.transactions WHERE type = 'adjustment'") == [(len(items),)]


def test_an_acknowledgement_moves_no_money_and_clears_the_check(drifted) -> None:  # noqa: ANN001
    book, accounts = drifted
    before = book.query("SELECT id, total_profit_distributed FROM investment.accounts ORDER BY id")
    items = drift_now(book)
    with psycopg.connect(book.dsn) as conn:
        done = monthly_drift.apply(conn, "2026-01", items, monthly_drift.ACKNOWLEDGE,
                                   decision(monthly_drift.ACKNOWLEDGE, "k2"))
    assert sorted(done["corrected"]) == sorted(accounts)
    assert book.query("SELECT count(*) FROM investment.transactions WHERE type = 'adjustment'") == [(0,)]
    assert book.query("SELECT id, total_profit_distributed FROM investment.accounts ORDER BY id") == before
    assert book.query("SELECT DISTINCT kind, net_delta FROM investment.distribution_corrections") == [
        ("acknowledged", Decimal(0))]
    assert drift_now(book) == []
    assert str(run_dag("monthly_distribution", date(2026, 1, 1)).state) == "success"


def test_drift_left_undecided_still_fails_the_run(drifted) -> None:  # noqa: ANN001
    """OPERATOR_DECISIONS=skip (the tests', make job's): nobody is asked, the drift is reported as before."""
    book, accounts = drifted
    dag_run = run_dag("monthly_distribution", date(2026, 1, 1))
    assert str(dag_run.state) == "failed"
    assert book.query("SELECT count(*) FROM investment.distribution_corrections") == [(0,)]
