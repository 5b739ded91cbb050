"""When each money job's work is due, as Airflow Deadline Alerts, and what a missed one announces.

A scheduled ``daily_performance`` run for D must have succeeded by ``DAILY_DEADLINE`` (06:00) on
D+1 in CRON_TIMEZONE; a ``monthly_distribution`` run for P by the contract cron's time on the 1st
of the next month plus ``MONTHLY_DEADLINE`` (24 h). The times are local, so the deadline follows
the zone's clock across DST changes: a reference that computes them from the run's own business
date (these classes, registered by the plugin) rather than a fixed interval after it was queued.
Backfills and manual runs get none: they are an operator's own, late on purpose.

What Airflow's deadlines cannot see is a run that was never created (the scheduler down, the DAG
paused, a month whose days are not all stored, so its rollup never fires): ``/health/jobs``
reports those (operations/health.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.definitions.deadline import BaseDeadlineReference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger("investment_jobs.deadlines")
REFERENCE_TYPE_FIELD = "reference_type"
AUTOMATIC_RUN_TYPES = ("scheduled", "asset_triggered")


def _run_of(session: Session, dag_id: str, run_id: str) -> Any:
    from airflow.models import DagRun
    from sqlalchemy import select

    return session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one_or_none()


@dataclass
class BusinessDateDeadline(BaseDeadlineReference):
    """``at`` (HH:MM) on the day after the run's business date, in ``timezone``: scheduled runs only."""

    at: str = "06:00"
    timezone: str = "UTC"
    required_kwargs: ClassVar[set[str]] = {"dag_id", "run_id"}

    def serialize_reference(self) -> dict[str, Any]:
        return {REFERENCE_TYPE_FIELD: self.reference_name, "at": self.at, "timezone": self.timezone}

    @classmethod
    def deserialize_reference(cls, reference_data: dict[str, Any]) -> BusinessDateDeadline:
        return cls(at=reference_data["at"], timezone=reference_data["timezone"])

    def _evaluate_with(self, *, session: Session, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        from investment_jobs.business_dates import business_date_of_run, deadline_after

        run = _run_of(session, dag_id, run_id)
        if run is None or str(getattr(run.run_type, "value", run.run_type)) not in AUTOMATIC_RUN_TYPES:
            return None
        day = business_date_of_run(run.partition_key, run.logical_date, run.run_after, self.timezone)
        return deadline_after(day, self.at, self.timezone)


@dataclass
class PeriodDeadline(BaseDeadlineReference):
    """The cron's first time in the month after the run's period, plus ``hours``: automatic runs only."""

    cron: str = "0 1 1 * *"
    timezone: str = "UTC"
    hours: float = 24.0  # float-ok: hours of a duration
    required_kwargs: ClassVar[set[str]] = {"dag_id", "run_id"}

    def serialize_reference(self) -> dict[str, Any]:
        return {REFERENCE_TYPE_FIELD: self.reference_name, "cron": self.cron, "timezone": self.timezone,
                "hours": self.hours}

    @classmethod
    def deserialize_reference(cls, reference_data: dict[str, Any]) -> PeriodDeadline:
        return cls(cron=reference_data["cron"], timezone=reference_data["timezone"], hours=reference_data["hours"])

    def _evaluate_with(self, *, session: Session, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        from investment_jobs.business_dates import period_deadline, period_of_run

        run = _run_of(session, dag_id, run_id)
        if run is None or str(getattr(run.run_type, "value", run.run_type)) not in AUTOMATIC_RUN_TYPES:
            return None
        period = period_of_run(run.partition_key, run.logical_date, run.run_after, self.timezone)
        return period_deadline(period, self.cron, self.timezone, timedelta(hours=self.hours))


def deadline_alert(dag_id: str):  # noqa: ANN201 - an Airflow DeadlineAlert
    """The DAG's deadline (parse time: from config only), or None for a job that has none."""
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert

    from investment_jobs import config

    if dag_id == "daily_performance":
        reference: BaseDeadlineReference = BusinessDateDeadline(config.daily_deadline(), config.cron_timezone())
    elif dag_id == "monthly_distribution":
        reference = PeriodDeadline(config.SCHEDULES[dag_id].cron, config.cron_timezone(),
                                   config.monthly_deadline().total_seconds() / 3600)
    else:
        return None
    return DeadlineAlert(reference=reference, interval=timedelta(0),
                         callback=SyncCallback(deadline_missed, kwargs={"job": dag_id}))


def deadline_missed(context: dict[str, Any], job: str) -> dict[str, Any]:
    """The callback of a missed deadline (on an executor): the failure notifier's JSON line and
    webhook message, with ``event: deadline_missed``, the job, D or P, and the business dates
    with no stored partition (daily: of the lookback window; monthly: of P). A run created after
    its deadline (the scheduler was down; a month whose last day came late) posts at once."""
    from investment_jobs import config
    from investment_jobs.business_dates import business_date_of_run, period_of_run
    from investment_jobs.jobs.partitions import lookback_window
    from investment_jobs.operations.alerts import announce

    run = context.get("dag_run") or {}
    key, logical, run_after = run.get("partition_key"), _parse(run.get("logical_date")), _parse(run.get("run_after"))
    event: dict[str, Any] = {"event": "deadline_missed", "job_name": job, "run_id": run.get("run_id"),
                             "state": run.get("state"), "deadline": str((context.get("deadline") or {}).get(
                                 "deadline_time")), "url": _run_url(job, run.get("run_id"))}
    tz = config.cron_timezone()
    if job == "monthly_distribution":
        period = period_of_run(key, logical, run_after or logical, tz)
        event["period"] = str(period)
        event["missing_dates"] = _missing_dates(period.first_day, period.last_day)
    else:
        event["business_date"] = business_date_of_run(key, logical, run_after or logical, tz).isoformat()
        event["missing_dates"] = _missing_dates(*lookback_window(config.health_lookback_days(), tz))
    return announce(event)


def _parse(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _run_url(job: str, run_id: str | None) -> str:
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base}/dags/{job}/runs/{quote(run_id or '', safe='')}"


def _missing_dates(first: date, last: date) -> list[str]:
    """The business dates ``first`` … ``last`` without a stored partition (investment DB: this runs
    on an executor, which has no access to Airflow's metadata)."""
    from investment_jobs.jobs.partitions import missing_between
    from investment_jobs.operations.run_context import with_connection

    try:
        return [d.isoformat() for d in with_connection(missing_between, first, last)]
    except Exception as exc:  # the announcement must go out even when the database does not answer
        log.error("could not list the missing business dates: %s", type(exc).__name__)
        return ["(unknown: the investment database did not answer)"]
