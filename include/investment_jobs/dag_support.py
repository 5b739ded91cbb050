"""What every DAG of the package shares: schedule, defaults, business date, summary logging.

Imported by DAG files at parse time: no DB, HTTP or Variable access here, and nothing heavy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from investment_jobs import config
from investment_jobs.business_dates import (
    BusinessDateNotEnded,
    business_date_of,
    period_of,
    require_ended,
    require_period_ended,
)

OWNER = "investment-ops"
log = logging.getLogger("investment_jobs")


def schedule_for(dag_id: str):  # noqa: ANN201 - an Airflow timetable
    """The DAG's timetable: its cron (env-overridable) as data intervals in CRON_TIMEZONE."""
    cron = config.SCHEDULES[dag_id].cron
    tz = config.cron_timezone()
    if config.cron_jobs_enabled():
        from airflow.sdk import CronDataIntervalTimetable

        return CronDataIntervalTimetable(cron, timezone=tz)
    from investment_jobs.timetables import CronDataIntervalUnscheduled

    return CronDataIntervalUnscheduled(cron, timezone=tz)


def dag_settings(dag_id: str) -> dict[str, Any]:
    """What every DAG of the package shares: its contract schedule, no catch-up (backfills are an
    operator's decision), one run at a time (runs of one job share its tables), retries with backoff."""
    import pendulum

    return {
        "dag_id": dag_id,
        "schedule": schedule_for(dag_id),
        "start_date": pendulum.datetime(2025, 1, 1, tz=config.cron_timezone()),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_args(),
    }


def default_args() -> dict[str, Any]:
    from investment_jobs.alerts import JobFailureNotifier

    policy = config.task_retry_policy()
    return {
        "owner": OWNER,
        "on_failure_callback": JobFailureNotifier(),
        "retries": policy.retries,
        "retry_delay": policy.retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": policy.max_retry_delay,
        "execution_timeout": config.task_execution_timeout(),
    }


def business_date_from_context(context: Any, now: datetime) -> date:
    """D for this run: the logical date's calendar date in CRON_TIMEZONE; refuses an open day."""
    from airflow.sdk.exceptions import AirflowFailException

    tz = config.cron_timezone()
    logical = context.get("logical_date") or context["dag_run"].run_after
    business_date = business_date_of(logical, tz)
    try:
        require_ended(business_date, tz, now)
    except BusinessDateNotEnded as exc:
        raise AirflowFailException(str(exc)) from None
    return business_date


def run_date_from_context(context: Any) -> date:
    """The calendar date of the run's logical date in CRON_TIMEZONE, without the ended check
    (ml_performance_sync syncs its own, possibly open, day; data_cleanup counts windows from it)."""
    logical = context.get("logical_date") or context["dag_run"].run_after
    return business_date_of(logical, config.cron_timezone())


def business_period_from_context(context: Any, now: datetime) -> str:
    """P for this run: the logical date's month (YYYY-MM) in CRON_TIMEZONE; refuses an open month."""
    from airflow.sdk.exceptions import AirflowFailException

    tz = config.cron_timezone()
    logical = context.get("logical_date") or context["dag_run"].run_after
    period, _, last_day = period_of(logical, tz)
    try:
        require_period_ended(last_day, tz, now)
    except BusinessDateNotEnded as exc:
        raise AirflowFailException(str(exc)) from None
    return period


def log_summary(summary: dict[str, Any]) -> None:
    """One structured JSON line: what the run did, readable in the task log in the UI."""
    log.info("%s", json.dumps(summary, sort_keys=True, default=str))


def job_started(context: Any) -> None:
    """The run's first JSON line: which job, for which date or period, how it was triggered."""
    from investment_jobs.alerts import run_identity

    log.info("%s", json.dumps({"event": "job_started", **run_identity(context)}, sort_keys=True, default=str))


def job_finished(context: Any, summary: dict[str, Any], success: bool) -> None:
    """The run's last JSON line (a failed run's is the failure callback's ``job_failed``): every
    job's summary says what it ``processed`` and its ``error_count``."""
    from investment_jobs.alerts import run_identity

    log.info("%s", json.dumps({"event": "job_finished", **run_identity(context),
                               "duration_ms": summary.get("duration_ms"), "processed": summary.get("processed"),
                               "errors": summary.get("error_count", 0), "success": success},
                              sort_keys=True, default=str))


def run_step(step: Callable[..., Any], ref: dict[str, Any], *args: Any) -> Any:
    """Call one job step on a fresh investment_db connection and the run's staging tables."""
    from investment_jobs.db.connect import connect
    from investment_jobs.db.staging import Staging

    with connect() as conn:
        return step(conn, Staging.from_xcom(ref["staging"]), *args)


def report(summary: dict[str, Any], started_at: str, check: Callable[[dict[str, Any]], None],
           needs_operator: type[Exception], context: Any | None = None) -> dict[str, Any]:
    """Finish a run's summary: duration, one JSON log line, the job_finished line, then fail (no
    retry) when ``check`` says an operator must act; retrying would not change the answer."""
    import pendulum
    from airflow.sdk.exceptions import AirflowFailException

    elapsed = pendulum.now("UTC") - pendulum.parse(started_at)  # clock-ok: a duration
    summary["duration_ms"] = int(elapsed.total_seconds() * 1000)
    log_summary(summary)
    try:
        check(summary)
    except needs_operator as exc:
        if context is not None:
            job_finished(context, summary, success=False)
        raise AirflowFailException(str(exc)) from None
    if context is not None:
        job_finished(context, summary, success=True)
    return summary
