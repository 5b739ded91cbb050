"""ml_performance_sync through dag.test() against real PostgreSQL and the ML engine stand-in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from investment_jobs_dev.standins.ml_engine_data import agent_items
from tests.support.airflow_runs import run_dag, task_states, xcom
from tests.support.book import Book

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

DAY = date(2026, 1, 8)
HOUR = datetime(2026, 1, 8, 10, 15, tzinfo=UTC)  # the 10:15 run syncs its own (open) day
AGENTS = """SELECT agent_id, product_id::text, date, total_trades, win_rate, pnl, sharpe_ratio, max_drawdown,
                   metrics::text, updated_at FROM investment.agent_performance ORDER BY agent_id, date"""
MONEY = ["SELECT * FROM investment.daily_performance ORDER BY account_id, date",
         "SELECT id, current_balance, total_return_percentage, updated_at FROM investment.accounts ORDER BY id"]


def products(book: Book) -> list[str]:
    return sorted({a.product_id for a in book.accounts})


def test_agent_snapshots_are_upserted_once_per_agent_and_date(book: Book, engine) -> None:  # noqa: ANN001
    engine.faults(fail_next=[429, 503])  # a burst the HTTP retries absorb
    dag_run = run_dag("ml_performance_sync", HOUR)
    assert str(dag_run.state) == "success", task_states(dag_run)
    rows = book.query(AGENTS)
    expected = agent_items(7, products(book), DAY)
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        (e["agent_id"], e["product_id"], DAY, e["total_trades"], Decimal(e["pnl"])) for e in expected]

    # The next hour's run refreshes the same date: nothing duplicated, nothing rewritten.
    succeeded = run_dag("ml_performance_sync", HOUR + timedelta(hours=1))
    assert str(succeeded.state) == "success"
    assert book.query(AGENTS) == rows


def test_a_malformed_agent_item_is_rejected_and_the_others_are_stored(book: Book, engine) -> None:  # noqa: ANN001
    engine.faults(malformed_agents=1)
    dag_run = run_dag("ml_performance_sync", HOUR)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["summarise"] == "failed"
    bad = agent_items(7, products(book), DAY)[0]["agent_id"]
    assert book.query("SELECT source, item_key, reason FROM investment.ml_sync_rejects") == [
        ("agents", bad, "pnl: not a number: 'n/a'")]
    stored = [r[0] for r in book.query("SELECT agent_id FROM investment.agent_performance")]
    assert bad not in stored and len(stored) == 2 * len(products(book)) - 1


def test_differences_are_recorded_without_touching_the_money_tables(book: Book, engine) -> None:  # noqa: ANN001
    for day in (DAY - timedelta(days=3), DAY - timedelta(days=2), DAY - timedelta(days=1)):
        assert str(run_dag("daily_performance", day).state) == "success"
    changed, removed = sorted(r[0] for r in book.query(
        "SELECT account_id::text FROM investment.daily_performance WHERE date = %s", (DAY - timedelta(days=1),)))[:2]
    with book.connect() as conn:
        conn.execute("UPDATE investment.daily_performance SET closing_balance = closing_balance + 1 "
                     "WHERE account_id = %s AND date = %s", (changed, DAY - timedelta(days=2)))
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s AND date = %s",
                     (removed, DAY - timedelta(days=1)))
    money = [book.query(q) for q in MONEY]

    dag_run = run_dag("ml_performance_sync", HOUR)
    assert str(dag_run.state) == "success", task_states(dag_run)
    found = book.query("""SELECT account_id::text, date, field, stored_value, engine_value
                          FROM investment.performance_discrepancies ORDER BY date, account_id""")
    stored_closing = book.query("SELECT closing_balance FROM investment.daily_performance WHERE account_id = %s "
                                "AND date = %s", (changed, DAY - timedelta(days=2)))[0][0]
    assert [row[:3] for row in found] == [(changed, DAY - timedelta(days=2), "closing_balance"),
                                          (removed, DAY - timedelta(days=1), "(row)")]
    assert Decimal(found[0][3]) == stored_closing
    assert Decimal(found[0][4]) == stored_closing - 1  # what the engine sent, as it sent it
    assert found[1][3:] == (None, "sent")
    assert [book.query(q) for q in MONEY] == money
    summary = xcom(dag_run, "summarise")
    assert summary["discrepancy_count"] == 2
    assert summary["reconciled_dates"] == [(DAY - timedelta(days=n)).isoformat() for n in (1, 2, 3)]

    # Once the day is corrected (daily_performance rerun), the next sync finds nothing.
    assert str(run_dag("daily_performance", DAY - timedelta(days=2)).state) == "success"
    assert str(run_dag("daily_performance", DAY - timedelta(days=1)).state) == "success"
    assert str(run_dag("ml_performance_sync", HOUR + timedelta(hours=1)).state) == "success"
    assert book.query("SELECT count(*) FROM investment.performance_discrepancies") == [(0,)]


def test_engine_down_fails_the_sync_and_writes_nothing(book: Book, engine) -> None:  # noqa: ANN001
    engine.faults(down=True)
    dag_run = run_dag("ml_performance_sync", HOUR)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["sync_agent_snapshots"] == "failed"
    assert book.query("SELECT count(*) FROM investment.agent_performance") == [(0,)]
