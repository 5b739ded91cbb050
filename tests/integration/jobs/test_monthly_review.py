"""The approval page of a month (issue 15): its figures are the ones credited, and distribute writes
exactly the approved rows or nothing. Real PostgreSQL; the HITL wait itself is in tests/stack."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest

from investment_jobs.business_dates import Period
from investment_jobs.config import CurrencyAmounts
from investment_jobs.jobs import monthly, monthly_review
from tests.support.airflow_runs import run_dag, task_states, xcom
from tests.support.book import Book, fill_days

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

JANUARY, FEBRUARY = Period(2026, 1), Period(2026, 2)
NO_ALERT = CurrencyAmounts({})


def computed(conn: psycopg.Connection, period: Period, run_id: str):  # noqa: ANN201
    run = monthly.reference_for(period, run_id)
    monthly.assess_accounts(conn, run, "UTC")
    monthly.compute_fees(conn, run)
    return run


def test_the_page_shows_what_is_then_credited(book: Book) -> None:
    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    with psycopg.connect(book.dsn) as conn:
        run = computed(conn, JANUARY, "review")
        review = monthly_review.review(conn, run, NO_ALERT, Decimal(50))
        page = monthly_review.render(review)
        written = monthly.distribute(conn, run, {"approved": True, "fingerprint": review.fingerprint})
        monthly.drop_staging(conn, run)
    rows = book.query("""SELECT p.currency, count(*), sum(d.gross_profit) FILTER (WHERE d.status = 'distributed'),
                                sum(d.performance_fee_amount), sum(d.net_profit),
                                coalesce(sum(d.gross_profit) FILTER (WHERE d.status = 'no_profit'), 0)
                         FROM investment.distributions d
                         JOIN investment.products p ON p.id = d.product_id GROUP BY 1 ORDER BY 1""")
    totals = review.totals()
    assert {cur: (int(t["accounts"]), t["gross_profit"], t["performance_fees"], t["net_profit"], t["losses"])
            for cur, t in totals.items()} == {cur: (n, g, f, net, loss) for cur, n, g, f, net, loss in rows}
    for t in totals.values():
        assert t["performance_fees"] + t["net_profit"] == t["gross_profit"] and t["losses"] <= 0
    assert written["distributed"] + written["no_profit"] == review.accounts == sum(r[1] for r in rows)
    fees = book.query("""SELECT d.account_id::text, d.performance_fee_amount FROM investment.distributions d
                         JOIN investment.products p ON p.id = d.product_id
                         WHERE d.performance_fee_amount > 0 AND p.currency = 'usd' ORDER BY 2 DESC, 1 LIMIT 10""")
    assert [(f["account_id"], f["performance_fee"]) for f in review.largest_fees["usd"]] == fees
    assert "Totals by currency and product" in page and fees[0][0] in page
    assert review.changes["usd"] == {"previous_period": None}


def test_held_back_accounts_change_and_anomalies_are_on_the_page(book: Book) -> None:
    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    with psycopg.connect(book.dsn) as conn:
        run = computed(conn, JANUARY, "jan")
        jan = monthly_review.review(conn, run, NO_ALERT, Decimal(50))
        monthly.distribute(conn, run, {"approved": True, "fingerprint": jan.fingerprint})
        monthly.drop_staging(conn, run)
    fill_days(book, date(2026, 2, 1), date(2026, 2, 28), salt="feb")
    held = book.query("SELECT id::text FROM investment.accounts WHERE status = 'active' ORDER BY id LIMIT 1")[0][0]
    book.query("DELETE FROM investment.daily_performance WHERE account_id = %s AND date IN "
               "('2026-02-10', '2026-02-11') RETURNING 1", (held,))
    with psycopg.connect(book.dsn) as conn:
        run = computed(conn, FEBRUARY, "feb")
        feb = monthly_review.review(conn, run, CurrencyAmounts({"usd": Decimal("0.01")}), Decimal(0))
        monthly.drop_staging(conn, run)
    assert feb.held_back_count == 1 and feb.held_back[0]["account_id"] == held
    assert feb.held_back[0]["missing_dates"] == ["2026-02-10", "2026-02-11"]
    change = feb.changes["usd"]
    jan_usd = jan.totals()["usd"]
    assert change["previous_period"] == "2026-01"
    assert change["previous_gross_profit"] == jan_usd["gross_profit"] + jan_usd["losses"]
    feb_usd = feb.totals()["usd"]
    assert change["gross_profit"] == feb_usd["gross_profit"] + feb_usd["losses"]
    assert change["change_percent"] == ((change["gross_profit"] - change["previous_gross_profit"])
                                        / abs(change["previous_gross_profit"]) * 100).quantize(Decimal("0.1"))
    assert any("DISTRIBUTION_REVIEW_FEE_ALERT" in a for a in feb.anomalies)
    assert any("DISTRIBUTION_REVIEW_CHANGE_ALERT" in a for a in feb.anomalies)
    page = monthly_review.render(feb)
    assert f"`{held}`: missing 2026-02-10 … 2026-02-11 (2 days)" in page and "Anomalies" in page


def test_rows_that_are_not_the_approved_ones_are_not_written(book: Book) -> None:
    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    with psycopg.connect(book.dsn) as conn:
        run = computed(conn, JANUARY, "changed")
        review = monthly_review.review(conn, run, NO_ALERT, Decimal(50))
        conn.execute(monthly.staging(run).sql("UPDATE {ready} SET fee = fee + 0.01, net = net - 0.01 "
                                              "WHERE status = 'distributed'"))
        conn.commit()
        with pytest.raises(monthly.ApprovalMismatch, match="not the ones approved"):
            monthly.distribute(conn, run, {"approved": True, "fingerprint": review.fingerprint})
        conn.rollback()
        with pytest.raises(monthly.ApprovalMismatch):
            monthly.distribute(conn, run, {"approved": False, "fingerprint": review.fingerprint})
        conn.rollback()
        monthly.drop_staging(conn, run)
    assert book.query("SELECT count(*) FROM investment.distributions") == [(0,)]
    assert book.query("SELECT count(*) FROM investment.distribution_rates") == [(0,)]


def test_an_automatic_approval_is_recorded_and_named_in_the_summary(book: Book) -> None:
    """DISTRIBUTION_APPROVAL=auto (the tests' setting): nobody waits, and the audit trail says so."""
    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    dag_run = run_dag("monthly_distribution", date(2026, 1, 1))
    assert str(dag_run.state) == "success", task_states(dag_run)
    decided = book.query("""SELECT id, decided_by, choice, outcome, run_id, figures->>'fingerprint',
                                   (figures->>'accounts')::int FROM investment.operator_decisions""")
    assert len(decided) == 1
    decision_id, by, choice, outcome, run_id, digest, accounts = decided[0]
    assert (by, choice, outcome, run_id) == ("auto", "Approve", "applied", dag_run.run_id)
    assert xcom(dag_run, "approve_distribution")["fingerprint"] == digest
    assert accounts == book.query("SELECT count(*) FROM investment.distributions")[0][0]
    summary = xcom(dag_run, "summarise")
    assert [(d["decision_id"], d["kind"], d["decided_by"]) for d in summary["decisions"]] == [
        (decision_id, "distribution_approval", "auto")]
