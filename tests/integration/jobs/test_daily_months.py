"""daily_performance by month (migration 0012) on real PostgreSQL: one partition per month, a query
by date reads one, references hold without foreign keys, and data_cleanup archives whole old months
that are then never written again."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest

from investment_jobs.business_dates import Period
from investment_jobs.jobs import daily, daily_months, monthly
from tests.support.airflow_runs import run_dag, task_states, xcom
from tests.support.book import Book, fill_days

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def partitions(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'investment.daily_performance'::regclass ORDER BY 1""")]


def test_each_month_is_a_partition_and_a_query_by_date_reads_one(book: Book) -> None:
    fill_days(book, date(2026, 1, 1), date(2026, 3, 31))
    with book.connect() as conn:
        assert partitions(conn) == ["daily_performance_2026_01", "daily_performance_2026_02",
                                    "daily_performance_2026_03"]
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT sum(daily_return) FROM investment.daily_performance WHERE date = '2026-02-10'"))
        assert "daily_performance_2026_02" in plan
        assert "daily_performance_2026_01" not in plan and "daily_performance_2026_03" not in plan
        # A second call for a month that exists makes nothing; a new month gets its partition.
        conn.execute("SELECT investment.ensure_daily_partition('2026-02-27')")
        assert conn.execute("SELECT investment.ensure_daily_partition('2026-04-01')").fetchone()[0] == \
            "daily_performance_2026_04"
        assert len(partitions(conn)) == 4
        with pytest.raises(psycopg.errors.CheckViolation):  # what the table promises holds on a partition
            conn.execute("UPDATE investment.daily_performance SET winning_trades = trades_executed + 1 "
                         "WHERE date = '2026-02-10'")


def test_references_hold_without_foreign_keys(book: Book) -> None:
    fill_days(book, date(2026, 1, 1), date(2026, 1, 3))
    account, product = book.query("SELECT account_id, product_id FROM investment.daily_performance LIMIT 1")[0]
    row = """INSERT INTO investment.daily_performance (account_id, product_id, date, opening_balance, closing_balance,
             daily_return, daily_return_percentage, cumulative_return, cumulative_return_percentage, trades_executed,
             winning_trades, losing_trades) VALUES (%s, %s, '2026-01-04', 1, 1, 0, 0, 0, 0, 0, 0, 0)"""
    with book.connect() as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="account .* does not exist"):
            conn.execute(row, (uuid.uuid4(), product))
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="product .* does not exist"):
            conn.execute(row, (account, uuid.uuid4()))
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="product .* does not exist"):
            conn.execute("UPDATE investment.daily_performance SET product_id = %s WHERE account_id = %s",
                         (uuid.uuid4(), account))
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="has daily_performance rows"):
            conn.execute("DELETE FROM investment.accounts WHERE id = %s", (account,))
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="has daily_performance rows"):
            conn.execute("DELETE FROM investment.products WHERE id = %s", (product,))
        conn.rollback()
        conn.execute(row, (account, product))  # a row that names what exists goes in
        unnamed = conn.execute(
            """INSERT INTO investment.accounts (user_id, product_id, status, initial_investment, opened_at)
               VALUES (gen_random_uuid(), %s, 'active', 1, now()) RETURNING id""", (product,)).fetchone()[0]
        assert conn.execute("DELETE FROM investment.accounts WHERE id = %s", (unnamed,)).rowcount == 1


CLEANUP = datetime(2026, 4, 5, 3, 0, tzinfo=UTC)  # B = 2026-04-05: with 1 month kept, March is the first kept


def test_data_cleanup_archives_whole_distributed_months_which_are_then_never_written(
        book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    from investment_jobs.jobs.partitions import MONTHLY, record_stored

    fill_days(book, date(2026, 1, 1), date(2026, 3, 31))
    january = book.query("SELECT count(*) FROM investment.daily_performance WHERE date < '2026-02-01'")[0][0]
    with book.connect() as conn:
        record_stored(conn, MONTHLY, "2026-01", "distributed-january")  # February is not distributed yet
    monkeypatch.setenv("DAILY_PERFORMANCE_RETENTION_MONTHS", "1")

    dry = xcom(run_dag("data_cleanup", CLEANUP, conf={"dry_run": True}), "summarise")["daily_months"]
    assert dry == {"retention_months": 1, "first_month_kept": "2026-03", "would_archive": ["2026-01"],
                   "kept": {"2026-02": "not distributed yet"}}
    with book.connect() as conn:
        assert len(partitions(conn)) == 3

    dag_run = run_dag("data_cleanup", CLEANUP, conf={"dry_run": False})
    assert str(dag_run.state) == "success"
    months = xcom(dag_run, "summarise")["daily_months"]
    assert months["archived"] == ["2026-01"] and months["kept"] == {"2026-02": "not distributed yet"}
    with book.connect() as conn:
        assert partitions(conn) == ["daily_performance_2026_02", "daily_performance_2026_03"]
        assert conn.execute("SELECT count(*) FROM investment_archive.daily_performance_2026_01").fetchone()[0] \
            == january > 0
        assert conn.execute("SELECT archived_table, rows FROM investment.archived_daily_months").fetchall() == [
            ("investment_archive.daily_performance_2026_01", january)]
        assert conn.execute("SELECT count(*) FROM investment.daily_performance WHERE date < '2026-02-01'"
                            ).fetchone()[0] == 0
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="archived by data_cleanup"):
            conn.execute("SELECT investment.ensure_daily_partition('2026-01-20')")
        conn.rollback()
        with pytest.raises(daily_months.MonthArchived, match="2026-01 were archived by data_cleanup"):
            daily.snapshot_active_accounts(conn, daily.reference_for(date(2026, 1, 20), "late"), "UTC")
        with pytest.raises(daily_months.MonthArchived, match="2026-01 were archived"):
            monthly.assess_accounts(conn, monthly.reference_for(Period(2026, 1), "again"), "UTC")

    # The DAG says so in its first task, and nothing else runs.
    late = run_dag("daily_performance", date(2026, 1, 20))
    assert str(late.state) == "failed" and task_states(late)["fetch_active_accounts"] == "failed"
    # A rerun archives nothing more.
    with book.connect() as conn:
        assert daily_months.archive_old_months(conn, CLEANUP.date(), 1, "again", dry_run=False)["archived"] == []


def test_no_retention_keeps_every_month(book: Book) -> None:
    fill_days(book, date(2024, 1, 1), date(2024, 1, 2))
    with book.connect() as conn:
        result = daily_months.archive_old_months(conn, date(2026, 4, 5), 0, "keep", dry_run=False)
        assert result["archived"] == [] and len(partitions(conn)) == 1


@pytest.mark.parametrize(("business_date", "months", "first_kept"), [
    (date(2026, 4, 5), 1, "2026-03"), (date(2026, 1, 31), 1, "2025-12"), (date(2026, 1, 1), 13, "2024-12"),
    (date(2026, 12, 31), 12, "2025-12"),
])
def test_the_first_month_kept(business_date: date, months: int, first_kept: str) -> None:
    assert daily_months.archive_cutoff(business_date, months).key == first_kept
