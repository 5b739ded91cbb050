"""data_cleanup through dag.test() on real PostgreSQL: windows from the logical date, batches,
dry run, the accounts that must stay closed, and reruns."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from tests.support.airflow_runs import run_dag, task_states, xcom

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

LOGICAL = datetime(2026, 6, 7, 3, 0, tzinfo=UTC)  # a Sunday 03:00 run: business date B = 2026-06-07
B = LOGICAL.date()


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(investment_db: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A product, an account, transactions and closed accounts around both windows' edges."""
    monkeypatch.setenv("CLEANUP_BATCH_SIZE", "2")  # several batches even here
    ids: dict = {"tx": {}, "accounts": {}}
    with psycopg.connect(investment_db) as conn:
        product = conn.execute("INSERT INTO investment.products (name, currency, performance_fee_percentage) "
                               "VALUES ('P', 'usd', 10) RETURNING id").fetchone()[0]

        def account(name: str, opened: date, closed: date | None) -> uuid.UUID:
            status = "closed" if closed else "active"
            acc = conn.execute(
                """INSERT INTO investment.accounts (user_id, product_id, status, initial_investment, current_balance,
                   opened_at, closed_at) VALUES (gen_random_uuid(), %s, %s, 100, 0, %s, %s) RETURNING id""",
                (product, status, at(opened), at(closed) if closed else None)).fetchone()[0]
            ids["accounts"][name] = acc
            return acc

        live = account("live", date(2024, 1, 1), None)
        for age in (89, 90, 91, 200):
            ids["tx"][f"failed_{age}"] = conn.execute(
                """INSERT INTO investment.transactions (account_id, user_id, type, amount, status, created_at)
                   VALUES (%s, gen_random_uuid(), 'withdrawal', 10, 'failed', %s) RETURNING id""",
                (live, at(B - timedelta(days=age)))).fetchone()[0]
        ids["tx"]["completed_200"] = conn.execute(
            """INSERT INTO investment.transactions (account_id, user_id, type, amount, status, created_at)
               VALUES (%s, gen_random_uuid(), 'deposit', 10, 'completed', %s) RETURNING id""",
            (live, at(B - timedelta(days=200)))).fetchone()[0]
        # An old failed transaction a withdrawal request still points at: kept.
        referenced = ids["tx"]["failed_200"]
        conn.execute("""INSERT INTO investment.withdrawal_requests (account_id, user_id, amount, withdrawal_method,
                        status, transaction_id) VALUES (%s, gen_random_uuid(), 10, 'stripe_payout', 'failed', %s)""",
                     (live, referenced))

        # Closed accounts: one day either side of 365 days; all opened and closed within one month,
        # whose distribution exists, so only the age decides.
        for age in (364, 365, 366):
            closed = B - timedelta(days=age)
            acc = account(f"closed_{age}", closed - timedelta(days=3) if closed.day > 3 else closed, closed)
            conn.execute("""INSERT INTO investment.distributions (account_id, product_id, user_id, period, period_start,
                            period_end, opening_balance, closing_balance, gross_profit, performance_fee_percentage,
                            performance_fee_amount, net_profit, status)
                            SELECT id, product_id, user_id, to_char(opened_at, 'YYYY-MM'), date_trunc('month', opened_at),
                                   date_trunc('month', opened_at) + interval '1 month - 1 day', 0, 0, 0, 10, 0, 0,
                                   'no_profit' FROM investment.accounts WHERE id = %s""", (acc,))
        # Closed long ago, but with a withdrawal still approved: kept.
        pending = account("open_withdrawal", date(2024, 3, 2), date(2024, 3, 20))
        conn.execute("""INSERT INTO investment.distributions (account_id, product_id, user_id, period, period_start,
                        period_end, opening_balance, closing_balance, gross_profit, performance_fee_percentage,
                        performance_fee_amount, net_profit, status)
                        SELECT id, product_id, user_id, '2024-03', '2024-03-01', '2024-03-31', 0, 0, 0, 10, 0, 0,
                               'no_profit' FROM investment.accounts WHERE id = %s""", (pending,))
        conn.execute("""INSERT INTO investment.withdrawal_requests (account_id, user_id, amount, withdrawal_method,
                        status) VALUES (%s, gen_random_uuid(), 10, 'bank_transfer', 'approved')""", (pending,))
        # Closed long ago, with its April 2024 never distributed: kept.
        account("undistributed", date(2024, 4, 2), date(2024, 4, 20))
    ids["dsn"] = investment_db
    return ids


def state(ledger: dict) -> tuple:
    with psycopg.connect(ledger["dsn"]) as conn:
        return (conn.execute("SELECT id FROM investment.transactions ORDER BY id").fetchall(),
                conn.execute("SELECT id, status, updated_at FROM investment.accounts ORDER BY id").fetchall())


def test_windows_count_from_the_logical_date(ledger: dict) -> None:
    dag_run = run_dag("data_cleanup", LOGICAL)
    assert str(dag_run.state) == "success", task_states(dag_run)
    with psycopg.connect(ledger["dsn"]) as conn:
        remaining = {r[0] for r in conn.execute("SELECT id FROM investment.transactions").fetchall()}
        statuses = dict(conn.execute("SELECT id, status FROM investment.accounts").fetchall())
    tx = ledger["tx"]
    assert remaining == {tx["failed_89"], tx["failed_90"], tx["failed_200"], tx["completed_200"]}
    accounts = ledger["accounts"]
    assert {name: statuses[acc] for name, acc in accounts.items()} == {
        "live": "active", "closed_364": "closed", "closed_365": "closed", "closed_366": "archived",
        "open_withdrawal": "closed", "undistributed": "closed"}
    summary = xcom(dag_run, "summarise")
    assert summary["transactions"]["deleted"] == 1
    assert summary["transactions"]["skipped_referenced"] == 1
    assert summary["accounts"]["archived"] == 1
    assert summary["accounts"]["skipped"] == {
        "a month it was active in is not distributed yet": {"count": 1,
                                                              "account_ids": [str(accounts["undistributed"])]},
        "a withdrawal has not ended": {"count": 1, "account_ids": [str(accounts["open_withdrawal"])]}}

    # A rerun is a no-op.
    before = state(ledger)
    rerun = run_dag("data_cleanup", LOGICAL)
    assert str(rerun.state) == "success"
    assert state(ledger) == before
    assert xcom(rerun, "summarise")["transactions"]["deleted"] == 0


def test_a_run_a_week_later_moves_the_windows(ledger: dict) -> None:
    assert str(run_dag("data_cleanup", LOGICAL + timedelta(days=7)).state) == "success"
    with psycopg.connect(ledger["dsn"]) as conn:
        remaining = {r[0] for r in conn.execute("SELECT id FROM investment.transactions").fetchall()}
        archived = {r[0] for r in conn.execute("SELECT id FROM investment.accounts WHERE status = 'archived'")}
    assert remaining == {ledger["tx"]["failed_200"], ledger["tx"]["completed_200"]}
    assert archived == {ledger["accounts"][f"closed_{age}"] for age in (364, 365, 366)}


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(ledger: dict) -> None:
    before = state(ledger)
    dag_run = run_dag("data_cleanup", LOGICAL, conf={"dry_run": True})
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert state(ledger) == before
    summary = xcom(dag_run, "summarise")
    assert summary["dry_run"] is True
    assert summary["transactions"]["would_delete"] == 1
    assert summary["accounts"]["would_archive"] == 1


def test_a_failed_transaction_of_a_withdrawal_still_in_processing_is_kept(investment_db: str) -> None:
    """Defect 11 of issue 12: data_cleanup deleted a failed transaction pointing at a withdrawal still
    in processing. Transactions tied to any request that has not ended are kept; an ended one's go."""
    with psycopg.connect(investment_db) as conn:
        product = conn.execute("INSERT INTO investment.products (name) VALUES ('P') RETURNING id").fetchone()[0]
        account = conn.execute(
            """INSERT INTO investment.accounts (user_id, product_id, initial_investment, current_balance, opened_at)
               VALUES (gen_random_uuid(), %s, 100, 100, '2024-01-01') RETURNING id""", (product,)).fetchone()[0]
        kept, gone = {}, {}
        for status in ("processing", "approved", "pending", "failed", "rejected"):
            request = conn.execute(
                """INSERT INTO investment.withdrawal_requests (account_id, user_id, amount, withdrawal_method, status,
                       currency, payout_amount_minor, claimed_at)
                   VALUES (%s, gen_random_uuid(), 10, 'stripe_payout', %s, 'usd', 1000, now()) RETURNING id""",
                (account, status)).fetchone()[0]
            tx = conn.execute(
                """INSERT INTO investment.transactions (account_id, user_id, type, amount, status, created_at,
                       withdrawal_request_id)
                   VALUES (%s, gen_random_uuid(), 'withdrawal', 10, 'failed', '2025-01-01', %s) RETURNING id""",
                (account, request)).fetchone()[0]
            (kept if status in ("processing", "approved", "pending") else gone)[status] = tx
    # dry_run given explicitly: dag.test() keeps the params of an earlier test's conf on the DAG object
    dag_run = run_dag("data_cleanup", LOGICAL, conf={"dry_run": False})
    assert str(dag_run.state) == "success", task_states(dag_run)
    with psycopg.connect(investment_db) as conn:
        left = {r[0] for r in conn.execute("SELECT id FROM investment.transactions")}
    assert set(kept.values()) <= left
    assert not set(gone.values()) & left
    assert xcom(dag_run, "summarise")["transactions"]["skipped_referenced"] == 3
