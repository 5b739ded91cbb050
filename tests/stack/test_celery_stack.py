"""daily_performance on a real deployment: PostgreSQL metadata, CeleryExecutor on Redis, a scheduler,
a DAG processor, an API server and two Celery workers, each its own process.

A backfill of 10 business dates, each date's pull split in two account ranges (``SHARDS=2``), must
end with exactly the rows the same days give in-process in one pull; then a second backfill
(reprocessing them) loses a worker in the middle, killed with SIGKILL while it runs a shard's pull,
and still ends correct after the retries, with no duplicate row. Runs when
PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 answer; skipped with the reason when not.
"""

from __future__ import annotations

import os
import time
from datetime import date, timedelta

import pytest

from investment_jobs_dev.stack import Stack, StackUnavailable, check_services, flush_redis_db
from tests.support.daily_steps import run_day as run_day_steps
from tests.support.stack_runs import meta, stop_and_keep_logs, wait_for

pytestmark = pytest.mark.integration

FIRST = date(2025, 12, 1)
DAYS = 10
ACCOUNTS = 60
SEED = 23

try:
    check_services(os.environ.get("STACK_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
                   os.environ.get("STACK_REDIS", "redis://127.0.0.1:6379"))
    UNAVAILABLE = None
except StackUnavailable as exc:
    UNAVAILABLE = str(exc)


def stored_rows(dsn: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        days = conn.execute(
            """SELECT account_id, date, opening_balance, closing_balance, daily_return, daily_return_percentage,
                      cumulative_return, cumulative_return_percentage, trades_executed, winning_trades,
                      losing_trades, ml_agent_data::text
               FROM investment.daily_performance ORDER BY account_id, date""").fetchall()
        accounts = conn.execute(
            "SELECT id, current_balance, total_return_percentage FROM investment.accounts ORDER BY id").fetchall()
    return days + accounts


def assert_same_rows(actual: list[tuple], expected: list[tuple], what: str) -> None:
    """Equal row lists, or an error that names the first rows that differ (not two 900-row dumps)."""
    if actual == expected:
        return
    only_actual = sorted(set(actual) - set(expected), key=str)
    only_expected = sorted(set(expected) - set(actual), key=str)
    lines = [f"{what}: {len(actual)} rows vs {len(expected)} expected; "
             f"{len(only_actual)} only in the stack's database, {len(only_expected)} only in the reference"]
    lines += [f"  stack:     {row}" for row in only_actual[:8]]
    lines += [f"  reference: {row}" for row in only_expected[:8]]
    raise AssertionError("\n".join(lines))


def wait_for_backfill(stack: Stack, backfill_id: int, timeout: float = 900) -> list[str]:  # float-ok
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(stack.metadata_dsn) as conn:
            states = [r[0] for r in conn.execute(
                "SELECT state FROM dag_run WHERE backfill_id = %s ORDER BY logical_date", (backfill_id,))]
        if len(states) == DAYS and all(s in ("success", "failed") for s in states):
            return states
        assert time.monotonic() < deadline, f"backfill {backfill_id} did not finish: {states}"
        time.sleep(3)


def backfill(stack: Stack, *extra: str) -> int:
    """Create a backfill of the test's days (once the DAG's previous one is closed: Airflow takes one
    backfill of a DAG at a time, and the scheduler closes a finished one a loop later)."""
    import psycopg

    wait_for("the previous backfill of daily_performance to close", lambda: meta(
        stack, "SELECT count(*) FROM backfill WHERE dag_id = 'daily_performance' AND completed_at IS NULL") == [(0,)])
    stack.airflow("backfill", "create", "--dag-id", "daily_performance", "--from-date", FIRST.isoformat(),
                  "--to-date", (FIRST + timedelta(days=DAYS - 1)).isoformat(), "--max-active-runs", "3", *extra)
    with psycopg.connect(stack.metadata_dsn) as conn:
        return conn.execute("SELECT max(id) FROM backfill").fetchone()[0]


def worker_running_a_task(stack: Stack, backfill_id: int, task_id: str = "pull_ml_performance"
                          ) -> tuple[str, list[tuple]] | None:
    """The name of a worker whose process tree runs ``task_id`` of this backfill right now, and the
    (run_id, map_index, try_number) of the task instances it runs (the engine's pages are slowed
    meanwhile, so such a task is almost always still running when the worker is killed)."""
    import psutil
    import psycopg

    with psycopg.connect(stack.metadata_dsn) as conn:
        running = conn.execute(
            """SELECT ti.pid, ti.run_id, ti.map_index, ti.try_number FROM task_instance ti
               JOIN dag_run dr ON dr.run_id = ti.run_id AND dr.dag_id = ti.dag_id
               WHERE dr.backfill_id = %s AND ti.task_id = %s AND ti.state = 'running' AND ti.pid IS NOT NULL""",
            (backfill_id, task_id)).fetchall()
    for name, proc in stack.procs.items():
        if not name.startswith("worker"):
            continue
        try:
            tree = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            continue
        hit = [(run_id, map_index, tries) for pid, run_id, map_index, tries in running if pid in tree]
        if hit:
            return name, hit
    return None


def still_running(stack: Stack, instances: list[tuple], task_id: str = "pull_ml_performance") -> list[tuple]:
    """Those of ``instances`` still 'running' in the metadata: after their worker was killed, the
    ones the kill interrupted (a task that reported success just before it is not among them)."""
    return [i for i in instances if meta(
        stack, "SELECT state FROM task_instance WHERE dag_id = 'daily_performance' AND task_id = %s "
               "AND run_id = %s AND map_index = %s", (task_id, i[0], i[1])) == [("running",)]]


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"the Celery stack needs its services: {UNAVAILABLE}")
def test_backfill_on_celery_matches_in_process_and_survives_a_killed_worker(
        airflow_db, pg_server, template_db, engine, tmp_path, monkeypatch):  # noqa: ANN001
    import psycopg

    from investment_jobs_dev.book import engine_registration, plan_book, seed_book

    if pg_server.host.startswith("/"):
        pytest.skip("the stack's processes need PostgreSQL over TCP at 127.0.0.1:5432")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    names = {k: f"ij_stack_{k}_{worker}" for k in ("celery", "reference", "meta")}
    celery_dsn = pg_server.fresh_database(names["celery"], template=template_db)
    reference_dsn = pg_server.fresh_database(names["reference"], template=template_db)
    pg_server.fresh_database(names["meta"])
    book = plan_book(ACCOUNTS, SEED, date(2025, 1, 1), date(2025, 11, 20))
    for dsn in (celery_dsn, reference_dsn):
        with psycopg.connect(dsn) as conn:
            seed_book(conn, book, SEED)
    engine.register(engine_registration(book))
    redis_db = 11
    flush_redis_db(redis_db)
    stack = Stack(home=tmp_path / "airflow", metadata_db=names["meta"], investment_dsn=celery_dsn, redis_db=redis_db,
                  workers=2, extra_env={"AIRFLOW_CONN_ML_ENGINE": engine.url, "ENABLE_CRON_JOBS": "false",
                                        "TASK_RETRIES": "3", "TASK_RETRY_DELAY_SECONDS": "2",
                                        "TASK_MAX_RETRY_DELAY_SECONDS": "10", "ML_ENGINE_PAGE_SIZE": "25",
                                        "SHARDS": "2"})
    try:
        stack.start()
        stack.airflow("dags", "unpause", "daily_performance")
        first = backfill(stack)
        assert wait_for_backfill(stack, first) == ["success"] * DAYS

        pulls = meta(stack, "SELECT count(*), count(DISTINCT map_index) FROM task_instance "
                            "WHERE task_id = 'pull_ml_performance'")
        assert pulls == [(2 * DAYS, 2)], pulls  # two shards a date

        # The same days in-process, each in one pull, into the reference database.
        monkeypatch.setenv("AIRFLOW_CONN_INVESTMENT_DB", reference_dsn)
        for i in range(DAYS):
            run_day_steps(FIRST + timedelta(days=i), page_size=25)
        reference = stored_rows(reference_dsn)
        assert_same_rows(stored_rows(celery_dsn), reference, "after the first backfill")

        # Rerun every day; SIGKILL the worker that runs a task in the middle of it. The engine's pages
        # take 1.5 s each meanwhile: a task of about a second could finish between the look and
        # the kill, and then nothing would have been killed.
        engine.faults(latency_ms=1500)
        second = backfill(stack, "--reprocess-behavior", "completed")
        interrupted, deadline = [], time.monotonic() + 300
        while not interrupted:
            assert time.monotonic() < deadline, "no worker was killed while it ran a task"
            with psycopg.connect(stack.metadata_dsn) as conn:
                done = conn.execute("SELECT count(*) FROM dag_run WHERE backfill_id = %s AND state = 'success'",
                                    (second,)).fetchone()[0]
            seen = worker_running_a_task(stack, second) if done >= 3 else None
            if seen is None:
                time.sleep(0.3)
                continue
            victim, instances = seen
            stack.kill(victim)
            # A task may report success between the look and the kill; then the kill interrupted
            # nothing: bring the worker back and try on another task.
            interrupted = still_running(stack, instances)
            if not interrupted:
                stack.start_worker(victim)
        engine.faults()
        assert wait_for_backfill(stack, second) == ["success"] * DAYS
        for run_id, map_index, tries in interrupted:
            after = meta(stack, "SELECT try_number, state FROM task_instance WHERE dag_id = 'daily_performance' "
                                "AND task_id = 'pull_ml_performance' AND run_id = %s AND map_index = %s",
                         (run_id, map_index))
            assert after and after[0][0] > tries and after[0][1] == "success", \
                f"the killed worker's task {run_id}[{map_index}] should have been retried elsewhere: {after}"
        assert_same_rows(stored_rows(celery_dsn), reference, "after the backfill that lost a worker")
        with psycopg.connect(celery_dsn) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT (account_id, date)) FROM investment.daily_performance"
                                ).fetchone() == (len(reference) - ACCOUNTS,) * 2
    finally:
        stop_and_keep_logs(stack, f"stack-test-{worker}", pg_server, names.values(), 200_000)
