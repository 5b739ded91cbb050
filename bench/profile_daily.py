"""Where daily_performance's time goes: each step of jobs/daily.py timed on its own, without Airflow.

``python -m bench.profile_daily [accounts] [--cprofile STEP]``: seeds a book of ``accounts``
(default 100,000) in a fresh database, loads it into the ML engine stand-in (its own process, pages
rendered before timing), stores the previous day, then runs each step for the business date and
prints one line per step: seconds, and this process's peak RSS during D's steps. With ``--cprofile STEP`` that step
runs under cProfile and its 25 most expensive functions (cumulative) are printed after. A tool for
the closing note and for changing the job, not a benchmark (make bench is that).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.run import DAY, PAGE_SIZE, Engine, base_env, log, prepare_book
from bench.run_dag import peak_rss_mb, reset_peak_rss

STEPS = ("snapshot", "pull", "store", "summarise", "drop")


def run_day(conn_factory: Callable[[], Any], day: Any, run_id: str, profile_step: str | None = None
            ) -> dict[str, float]:
    from investment_jobs.jobs import daily
    from investment_jobs.ml_engine.client import MLEngineClient

    run = daily.reference_for(day, run_id)
    if os.environ.get("PROFILE_STATEMENTS"):
        _time_statements()
    seconds: dict[str, float] = {}
    counts: dict[str, Any] = {}
    profiler = cProfile.Profile()

    def timed(name: str, step: Callable[..., Any], *args: Any) -> Any:
        with conn_factory() as conn:
            started = time.perf_counter()
            if name == profile_step:
                profiler.enable()
            out = step(conn, *args)
            if name == profile_step:
                profiler.disable()
            seconds[name] = round(time.perf_counter() - started, 3)
        return out

    counts["active_accounts"] = timed("snapshot", daily.snapshot_active_accounts, run, "UTC")
    with MLEngineClient() as client:
        counts.update(timed("pull", lambda conn: daily.pull_performance(conn, client, run, PAGE_SIZE)))
    counts.update(timed("store", daily.store_day, run, "UTC"))
    timed("summarise", daily.summarise, run, counts, 0)
    timed("drop", daily.drop_staging, run)
    seconds["total"] = round(sum(seconds.values()), 3)
    if profile_step:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())
    return seconds


def _time_statements() -> None:
    """Print each statement of the steps that takes over 30 ms (PROFILE_STATEMENTS=1)."""
    import psycopg

    if getattr(psycopg.Connection.execute, "_timed", False):
        return
    original = psycopg.Connection.execute

    def execute(self, query, params=None, **kwargs):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        out = original(self, query, params, **kwargs)
        took = time.perf_counter() - started
        if took > 0.03:
            text = query.as_string(self) if hasattr(query, "as_string") else str(query)
            print(f"  {took:6.3f} s  {' '.join(text.split())[:110]}")
        return out

    execute._timed = True
    psycopg.Connection.execute = execute


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("accounts", nargs="?", type=int, default=100_000)
    parser.add_argument("--cprofile", choices=STEPS)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()

    from bench.run import WORK
    from investment_jobs.db.connect import connect
    from investment_jobs_dev.book import engine_registration
    from investment_jobs_dev.postgres import local_or_embedded_postgres

    WORK.mkdir(parents=True, exist_ok=True)
    server = local_or_embedded_postgres(WORK / "pg")
    engine = Engine()
    name = f"ij_profile_{args.accounts}"
    try:
        log(f"seeding {args.accounts} accounts")
        dsn, book = prepare_book(server, name, args.accounts)
        previous = DAY - timedelta(days=1)
        engine.load_book(engine_registration(book), [previous, DAY])
        os.environ.update(base_env())
        os.environ["AIRFLOW_CONN_INVESTMENT_DB"] = dsn
        run_day(connect, previous, "profile_previous")
        reset_peak_rss()  # the seeding of the book (this process) is not the job's memory
        seconds = run_day(connect, DAY, "profile", args.cprofile)
        seconds["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps({"accounts": args.accounts, "seconds": seconds}))
    finally:
        engine.stop()
        if args.keep:
            log(f"kept {server.dsn(name)}")
        else:
            server.drop_database(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
