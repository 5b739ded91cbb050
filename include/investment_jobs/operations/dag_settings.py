"""What every DAG of the package shares at parse time: schedule, defaults, tags.

Imported by DAG files at parse time: no DB, HTTP or Variable access here, and nothing heavy.
"""

from __future__ import annotations

from typing import Any

from investment_jobs import config

OWNER = "investment-ops"
# The tags a DAG may carry: a checked vocabulary (tests/dags), so the UI's tag filter stays useful.
TAGS = frozenset({"investment", "money", "ml-engine", "stripe", "maintenance",
                  "daily", "monthly", "hourly", "half-hourly", "weekly"})


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
    from investment_jobs.operations.alerts import JobFailureNotifier

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
