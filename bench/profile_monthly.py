"""Where monthly_distribution's time goes: each step of jobs/monthly.py timed on its own, without Airflow.

``python -m bench.profile_monthly [accounts]``: seeds a book of ``accounts`` (default 100,000) in a
fresh database with every active account's 31 days of 2026-01 stored (as ``make bench`` does), then
runs assess, fees and distribute (approved by the computed rows' own fingerprint) for 2026-01 and
prints one line per step; with ``PROFILE_STATEMENTS=1`` every statement over 30 ms as well. A tool
for the closing note and for changing the job, not a benchmark (make bench is that).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from bench.run import MONTHLY_ROWS, WORK, base_env, log, prepare_book


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("accounts", nargs="?", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()

    import psycopg

    from bench.profile_daily import _time_statements
    from investment_jobs_dev.postgres import local_or_embedded_postgres

    WORK.mkdir(parents=True, exist_ok=True)
    server = local_or_embedded_postgres(WORK / "pg")
    name = f"ij_profile_monthly_{args.accounts}"
    try:
        log(f"seeding {args.accounts} accounts and their 31 days of 2026-01")
        dsn, _ = prepare_book(server, name, args.accounts)
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT investment.ensure_daily_partition('2026-01-01')")
            conn.execute(MONTHLY_ROWS)
            conn.commit()
            conn.execute("ANALYZE")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        os.environ.update(base_env())
        os.environ["AIRFLOW_CONN_INVESTMENT_DB"] = dsn
        if os.environ.get("PROFILE_STATEMENTS"):
            _time_statements()
        print(json.dumps({"accounts": args.accounts, "seconds": run_month()}))
    finally:
        if args.keep:
            log(f"kept {server.dsn(name)}")
        else:
            server.drop_database(name)
    return 0


def run_month() -> dict[str, float]:
    from investment_jobs.business_dates import Period
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs import monthly
    from investment_jobs.jobs.monthly_review import fingerprint

    run = monthly.reference_for(Period(2026, 1), "profile")
    seconds: dict[str, float] = {}

    def timed(step: str, work: Callable[..., Any], *args: Any) -> Any:
        with connect() as conn:
            started = time.perf_counter()
            out = work(conn, *args)
            seconds[step] = round(time.perf_counter() - started, 3)
        return out

    timed("assess", monthly.assess_accounts, run, "UTC")
    timed("fees", monthly.compute_fees, run)
    with connect() as conn:
        rows, digest = fingerprint(conn, run)
        conn.rollback()
    timed("distribute", monthly.distribute, run, {"approved": True, "fingerprint": digest, "accounts": rows})
    timed("drop", monthly.drop_staging, run)
    seconds["total"] = round(sum(seconds.values()), 3)
    return seconds


if __name__ == "__main__":
    raise SystemExit(main())
