"""daily_performance's steps for one business date as its tasks call them, without Airflow around
them: for tests of the SQL's own properties (order independence, the summaries), where dozens of
dates through dag.test() would only measure Airflow."""

from __future__ import annotations

from datetime import date
from typing import Any


def run_day(day: date, run_id: str | None = None, page_size: int = 7) -> dict[str, Any]:
    """One date, start to end (the teardown included); the summary."""
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs import daily
    from investment_jobs.ml_engine.client import MLEngineClient

    run = daily.reference_for(day, run_id or f"steps-{day}")
    with connect() as conn, MLEngineClient() as client:
        counts: dict[str, Any] = {"active_accounts": daily.snapshot_active_accounts(conn, run, "UTC")}
        counts.update(daily.pull_performance(conn, client, run, page_size))
        counts.update(daily.store_day(conn, run, "UTC"))
        summary = daily.summarise(conn, run, counts, 0)
        daily.drop_staging(conn, run)
    return summary
