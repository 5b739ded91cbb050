"""What a task needs from its run: the business date or period it is about, and a connection.

The date or period comes from the run (contracts.md), never from the wall clock; the wall clock is
used only to refuse a date or period that has not ended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from investment_jobs import config
from investment_jobs.business_dates import (
    BusinessDateNotEnded,
    Period,
    business_date_of_run,
    period_of_run,
    require_ended,
    require_period_ended,
)


def partition_key(context: Any) -> str | None:
    """The run's partition key: a scheduled or backfilled run of a partitioned DAG has one."""
    return context.get("partition_key") or getattr(context.get("dag_run"), "partition_key", None)


def _when(context: Any) -> tuple[str | None, datetime | None, datetime]:
    dag_run = context["dag_run"]
    return partition_key(context), context.get("logical_date") or getattr(dag_run, "logical_date", None), \
        dag_run.run_after


def run_date(context: Any) -> date:
    """D of the run (its partition key, else its logical date's calendar date in CRON_TIMEZONE),
    without the ended check (ml_performance_sync syncs its own, possibly open, day; data_cleanup
    counts windows from it)."""
    return business_date_of_run(*_when(context), config.cron_timezone())


def ended_business_date(context: Any, now: datetime) -> date:
    """D for this run; refuses (without a retry) a day that has not ended at ``now``."""
    from airflow.sdk.exceptions import AirflowFailException

    day = run_date(context)
    try:
        require_ended(day, config.cron_timezone(), now)
    except BusinessDateNotEnded as exc:
        raise AirflowFailException(str(exc)) from None
    return day


def ended_period(context: Any, now: datetime) -> Period:
    """P for this run: the logical date's month; refuses (without a retry) a month that has not ended."""
    from airflow.sdk.exceptions import AirflowFailException

    period = period_of_run(*_when(context), config.cron_timezone())
    try:
        require_period_ended(period, config.cron_timezone(), now)
    except BusinessDateNotEnded as exc:
        raise AirflowFailException(str(exc)) from None
    return period


def with_connection(step: Callable[..., Any], *args: Any) -> Any:
    """Call one job step on a fresh investment_db connection (closed after, whatever happens)."""
    from investment_jobs.db.connect import connect

    with connect() as conn:
        return step(conn, *args)


def run_step(step: Callable[..., Any], reference: dict[str, str], *args: Any) -> Any:
    """Call one step of a dated job with its run reference (from the first task's XCom), typed."""
    from investment_jobs.db.staging import RunReference

    return with_connection(step, RunReference.from_xcom(reference), *args)
