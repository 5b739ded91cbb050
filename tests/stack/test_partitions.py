"""Business dates as partitions, on a real scheduler: LocalExecutor, PostgreSQL metadata, an API
server, a scheduler and a DAG processor, each its own process.

One story, in the order an operator lives it (issue 14):

1. February 2026 is backfilled without two of its days: no monthly_distribution run exists, and
   ``/health/jobs`` lists exactly those two dates as missing in February.
2. The two days are backfilled: a monthly_distribution run for 2026-02 appears by itself (the
   rollup of the month's daily partitions) and distributes every account, once.
3. The engine restates one account's day and the day is rerun: the daily run reports the drift
   (summary, webhook), a rerun of the month reports it too, and nothing is distributed twice.
4. A backfill of withdrawal_processing is refused by the REST API.
5. The scheduled daily run misses its deadline: ``deadline_missed`` reaches the webhook.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from investment_jobs_dev.stack import Stack
from tests.support.stack_runs import logged_summary, meta, stack_databases, stop_and_keep_logs, summary_of, wait_for

pytestmark = pytest.mark.integration

MONTH = "2026-02"
FEBRUARY = [date(2026, 2, 1) + timedelta(days=n) for n in range(28)]
HELD_BACK = [date(2026, 2, 10), date(2026, 2, 11)]
RESTATED_DAY = date(2026, 2, 15)
ACCOUNTS = 12
SEED = 41


def backfill(stack: Stack, first: date, last: date, *extra: str) -> int:
    """``airflow backfill create`` for business dates ``first`` … ``last`` (both included), as the
    README tells an operator; returns the backfill's id once all its runs have finished."""
    before = meta(stack, "SELECT coalesce(max(id), 0) FROM backfill")[0][0]
    created = stack.airflow("backfill", "create", "--dag-id", "daily_performance", "--from-date", first.isoformat(),
                            "--to-date", last.isoformat(), "--max-active-runs", "4", *extra, check=False)
    assert created.returncode == 0, created.stderr[-3000:]
    backfill_id = meta(stack, "SELECT max(id) FROM backfill")[0][0]
    assert backfill_id > before
    expected = (last - first).days + 1

    def finished() -> list[tuple] | None:
        runs = meta(stack, "SELECT partition_key, state FROM dag_run WHERE backfill_id = %s ORDER BY 1",
                    (backfill_id,))
        return runs if len(runs) == expected and all(s in ("success", "failed") for _, s in runs) else None

    runs = wait_for(f"backfill {backfill_id} of {first} … {last}", finished)
    assert runs == [((first + timedelta(days=n)).isoformat(), "success") for n in range(expected)]
    # One backfill of a DAG at a time: the scheduler closes this one a loop after its last run.
    wait_for(f"backfill {backfill_id} to close", lambda: meta(
        stack, "SELECT completed_at FROM backfill WHERE id = %s", (backfill_id,))[0][0])
    return backfill_id


def month_runs(stack: Stack) -> list[tuple]:
    return meta(stack, """SELECT run_id, run_type, state FROM dag_run WHERE dag_id = 'monthly_distribution'
                          AND partition_key = %s ORDER BY id""", (MONTH,))


def health(stack: Stack) -> dict:
    try:
        with urllib.request.urlopen(f"{stack.url}/health/jobs", timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 when a money job is unhealthy: the body is the same
        return json.loads(exc.read())


def distributions(dsn: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("""SELECT account_id, gross_profit, performance_fee_amount, net_profit, opening_balance,
                                      closing_balance, status FROM investment.distributions
                               WHERE period = %s ORDER BY account_id""", (MONTH,)).fetchall()


def money_moved(dsn: str) -> tuple:
    """The February transactions the distributions wrote: (how many, their total)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("""SELECT count(*), coalesce(sum(t.amount), 0) FROM investment.transactions t
                               JOIN investment.distributions d ON d.id = t.distribution_id
                               WHERE d.period = %s AND t.type = 'profit_distribution'""", (MONTH,)).fetchone()


def test_a_month_distributes_itself_once_its_days_are_stored(pg_server, template_db, engine, webhook,
                                                              tmp_path):  # noqa: ANN001
    import psycopg

    from investment_jobs_dev.book import engine_registration, plan_book, seed_book

    names, dsn = stack_databases(pg_server, template_db, "partitions")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    book = plan_book(ACCOUNTS, SEED, date(2025, 6, 1), date(2026, 1, 20))
    with psycopg.connect(dsn) as conn:
        seed_book(conn, book, SEED)
    engine.register(engine_registration(book))
    hook_url, received = webhook
    today = datetime.now(UTC).date()  # clock-ok: the health window must reach back to February 2026
    stack = Stack(home=tmp_path / "airflow", metadata_db=names["meta"], investment_dsn=dsn,
                  executor="LocalExecutor", extra_env={
                      "AIRFLOW_CONN_ML_ENGINE": engine.url, "ALERT_WEBHOOK_URL": hook_url,
                      "DEADLINE_ALERTS": "true", "DAILY_DEADLINE": "00:00",  # yesterday's is already due
                      "HEALTH_LOOKBACK_DAYS": str((today - FEBRUARY[0]).days),
                      "TASK_RETRIES": "1", "TASK_RETRY_DELAY_SECONDS": "2", "TASK_MAX_RETRY_DELAY_SECONDS": "5",
                      "AIRFLOW__CORE__PARALLELISM": "8", "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1"})
    try:
        stack.start()
        for dag_id in ("daily_performance", "monthly_distribution"):
            stack.airflow("dags", "unpause", dag_id)

        # 1. February without the 10th and 11th: the month waits, and says for which days.
        backfill(stack, FEBRUARY[0], HELD_BACK[0] - timedelta(days=1))
        backfill(stack, HELD_BACK[-1] + timedelta(days=1), FEBRUARY[-1])
        wait_for("the scheduler to count February's 26 days toward the month", lambda: meta(stack, """
            SELECT count(DISTINCT k.source_partition_key) FROM partitioned_asset_key_log k
            JOIN asset_partition_dag_run p ON p.id = k.asset_partition_dag_run_id
            WHERE p.target_dag_id = 'monthly_distribution' AND p.partition_key = %s""", (MONTH,))[0][0] == 26)
        assert month_runs(stack) == []
        daily = health(stack)["jobs"]["daily_performance"]
        february_missing = [d for d in daily["missing_business_dates"] if d.startswith(MONTH)]
        assert february_missing == [d.isoformat() for d in HELD_BACK]
        assert distributions(dsn) == []

        # 2. The two days arrive: the month runs by itself, distributes every account, once.
        backfill(stack, HELD_BACK[0], HELD_BACK[-1])
        runs = wait_for("the asset-triggered run for 2026-02 to finish", lambda: [
            r for r in month_runs(stack) if r[2] in ("success", "failed")])
        assert [(t, s) for _, t, s in runs] == [("asset_triggered", "success")]
        summary = summary_of(stack, "monthly_distribution", runs[0][0])
        with psycopg.connect(dsn) as conn:
            expected = conn.execute("""
                SELECT account_id, sum(daily_return), (array_agg(opening_balance ORDER BY date))[1],
                       (array_agg(closing_balance ORDER BY date DESC))[1]
                FROM investment.daily_performance WHERE date BETWEEN '2026-02-01' AND '2026-02-28'
                GROUP BY account_id ORDER BY account_id""").fetchall()
            assert all(n == 28 for (n,) in conn.execute("""SELECT count(*) FROM investment.daily_performance
                WHERE date BETWEEN '2026-02-01' AND '2026-02-28' GROUP BY account_id"""))
        paid = distributions(dsn)
        assert len(expected) >= ACCOUNTS - 3 and [(a, g, o, c) for a, g, _, _, o, c, _ in paid] == expected
        for _, gross, fee, net, _, _, status in paid:
            assert gross - fee == net and status in ("distributed", "no_profit")
            assert fee == 0 if gross <= 0 else Decimal(0) <= fee < gross
        assert summary["outcomes"]["distribute"] == len(expected) and summary["error_count"] == 0
        moved = money_moved(dsn)
        assert moved[0] == len([p for p in paid if p[-1] == "distributed"])
        assert health(stack)["jobs"]["daily_performance"]["missing_business_dates"][:1] != [FEBRUARY[0].isoformat()]

        # 3. The engine restates one account's day; the day is rerun.
        restated = expected[0][0]
        engine.faults(restate={str(restated): "12.34"})
        backfill(stack, RESTATED_DAY, RESTATED_DAY, "--reprocess-behavior", "completed")
        rerun = meta(stack, """SELECT run_id FROM dag_run WHERE dag_id = 'daily_performance' AND partition_key = %s
                               ORDER BY id DESC LIMIT 1""", (RESTATED_DAY.isoformat(),))[0][0]
        drift = summary_of(stack, "daily_performance", rerun)["distribution_drift"]
        assert drift == {"period": MONTH, "count": 1, "account_ids": [str(restated)]}
        drift_alerts = [m for m in received if "`distribution_drift`" in json.dumps(m)]
        assert len(drift_alerts) == 1 and str(restated) in json.dumps(drift_alerts[0])
        assert distributions(dsn) == paid
        # The month's own drift rule, on a rerun an operator starts for the period:
        status, body = stack.api("POST", "/api/v2/dags/monthly_distribution/dagRuns",
                                 {"logical_date": None, "partition_key": MONTH, "dag_run_id": "manual__recheck_2026-02"})
        assert status == 200, body
        recheck = wait_for("the manual recheck of 2026-02 to finish", lambda: meta(stack, """
            SELECT state FROM dag_run WHERE dag_id = 'monthly_distribution' AND run_id = 'manual__recheck_2026-02'
            AND state IN ('success', 'failed')"""))
        assert recheck == [("failed",)]  # an operator must look: a distributed account drifted
        rechecked = logged_summary(stack, "monthly_distribution", "manual__recheck_2026-02")
        assert rechecked["drift_count"] == 1 and rechecked["drift"][0]["account_id"] == str(restated)
        assert rechecked["outcomes"].get("distribute", 0) == 0
        assert distributions(dsn) == paid  # nothing distributed twice
        assert money_moved(dsn) == moved
        assert [t for _, t, _ in month_runs(stack)].count("asset_triggered") == 1

        # 4. A payout job has no dates: the API refuses to backfill it.
        status, body = stack.api("POST", "/api/v2/backfills", {
            "dag_id": "withdrawal_processing", "from_date": "2026-02-01T00:00:00Z",
            "to_date": "2026-02-03T00:00:00Z", "max_active_runs": 1})
        assert 400 <= status < 500, (status, body)
        assert "backfill" in json.dumps(body).lower()
        assert meta(stack, "SELECT count(*) FROM backfill WHERE dag_id = 'withdrawal_processing'") == [(0,)]

        # 5. The scheduled daily run (the newest ended date) is past DAILY_DEADLINE: it is announced.
        def deadline_alerts() -> list[dict]:
            return [m for m in received if "`deadline_missed`" in json.dumps(m)
                    and "`daily_performance`" in json.dumps(m)]

        alert = wait_for("a deadline_missed message for daily_performance", deadline_alerts)[0]
        scheduled = meta(stack, """SELECT partition_key FROM dag_run WHERE dag_id = 'daily_performance'
                                   AND run_type = 'scheduled' ORDER BY id""")
        assert scheduled and alert["text"] == f"daily_performance missed its deadline for {scheduled[0][0]}"
        # the window's business dates with no stored partition, as ranges of days
        assert re.search(r"no stored partition: 2026-\d\d-\d\d … 2026-\d\d-\d\d \(\d+ days\)", json.dumps(alert, ensure_ascii=False))
    finally:
        stop_and_keep_logs(stack, f"partitions-test-{worker}", pg_server, names.values(), 300_000)
