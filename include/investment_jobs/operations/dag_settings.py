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
    """The DAG's timetable, in CRON_TIMEZONE, from its contract cron (env-overridable).

    ``daily_performance``: one partition per business date (key ``YYYY-MM-DD``), each run firing one
    cron tick after its day (``run_offset=-1``). ``monthly_distribution``: a rollup of a month's
    daily partitions, waiting for every day (its cron then sets the month's deadline). The others:
    cron data intervals. With ``ENABLE_CRON_JOBS=false``: variants the scheduler never runs on
    their own (backfills and manual runs still work); the monthly one falls back to its cron's
    periods, so a month can still be backfilled while nothing schedules it.
    """
    cron = config.SCHEDULES[dag_id].cron
    tz = config.cron_timezone()
    enabled = config.cron_jobs_enabled()
    if dag_id == "daily_performance":
        from investment_jobs.assets import DAY_KEY_FORMAT
        from investment_jobs.timetables import BusinessDatePartitions, CronPartitionUnscheduled

        partitions = BusinessDatePartitions if enabled else CronPartitionUnscheduled
        return partitions(cron, timezone=tz, run_offset=-1, key_format=DAY_KEY_FORMAT)
    if dag_id == "monthly_distribution" and enabled:
        from airflow.sdk import MonthWindow, PartitionedAssetTimetable, RollupMapper, StartOfMonthMapper

        from investment_jobs.assets import DAILY_PERFORMANCE, DAY_KEY_FORMAT

        return PartitionedAssetTimetable(assets=DAILY_PERFORMANCE, default_partition_mapper=RollupMapper(
            upstream_mapper=StartOfMonthMapper(input_format=DAY_KEY_FORMAT), window=MonthWindow()))
    if enabled:
        from airflow.sdk import CronDataIntervalTimetable

        return CronDataIntervalTimetable(cron, timezone=tz)
    from investment_jobs.timetables import CronDataIntervalUnscheduled

    return CronDataIntervalUnscheduled(cron, timezone=tz)


# Run types a DAG accepts. A payout job has no dates: a backfill of it is a mistake, refused.
ALLOWED_RUN_TYPES = {"withdrawal_processing": ("scheduled", "manual")}


def dag_settings(dag_id: str) -> dict[str, Any]:
    """What every DAG of the package shares: its contract schedule, no catch-up (backfills are an
    operator's decision), one run at a time (runs of one job share its tables), retries with
    backoff, its deadline, and the run types it accepts."""
    import pendulum

    from investment_jobs.operations.deadlines import deadline_alert

    settings: dict[str, Any] = {
        "dag_id": dag_id,
        "schedule": schedule_for(dag_id),
        "start_date": pendulum.datetime(2025, 1, 1, tz=config.cron_timezone()),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_args(),
    }
    deadline = deadline_alert(dag_id) if config.deadline_alerts_enabled() else None
    if deadline is not None:
        settings["deadline"] = deadline
    if dag_id in ALLOWED_RUN_TYPES:
        from airflow.utils.types import DagRunType

        settings["allowed_run_types"] = [DagRunType(t) for t in ALLOWED_RUN_TYPES[dag_id]]
    return settings


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
