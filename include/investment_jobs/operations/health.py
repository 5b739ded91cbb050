"""``GET /health/jobs``: is every money job on time? (contracts.md, Operator surface)

Per DAG: paused or not, schedule, last run (logical date, state, start, end), the last business
date or period a run completed, the next scheduled run, and how far it lags. HTTP 200 when every
money job (daily_performance, monthly_distribution, withdrawal_processing) is on time, 503 when one
is late, never ran, or its last run failed.

*Lag* is how long the job's work has been uncovered: for the dated jobs, the time since the end of
the last business date (or period) a run completed; for withdrawal_processing, since its last
successful run ended. A job is *late* when its lag exceeds one schedule interval plus
``HEALTH_GRACE_MINUTES`` (default 120): the next run should have finished by then. The decision
(:func:`assess`) is pure; :func:`snapshot` reads Airflow's metadata database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from investment_jobs import config
from investment_jobs.business_dates import business_date_of, period_of

DATED = {"daily_performance": "business_date", "monthly_distribution": "period"}


@dataclass(frozen=True)
class RunFacts:
    logical_date: datetime | None
    state: str
    start_date: datetime | None
    end_date: datetime | None
    run_type: str


@dataclass(frozen=True)
class DagFacts:
    dag_id: str
    known: bool  # the DAG processor has parsed it
    paused: bool
    schedule: str | None
    interval: timedelta | None  # one schedule interval, from the next data interval
    next_run_after: datetime | None
    last_run: RunFacts | None
    last_success: RunFacts | None


def covered_until(dag_id: str, success: RunFacts, tz: str) -> tuple[str | None, datetime | None]:
    """What the last successful run completed (business date, period or nothing) and the moment
    up to which the job's work is done."""
    import pendulum

    if dag_id in DATED and success.logical_date is not None:
        if DATED[dag_id] == "business_date":
            day = business_date_of(success.logical_date, tz)
            end = pendulum.datetime(day.year, day.month, day.day, tz=tz).add(days=1)
            return day.isoformat(), end
        period = period_of(success.logical_date, tz)
        last_day = period.last_day
        end = pendulum.datetime(last_day.year, last_day.month, last_day.day, tz=tz).add(days=1)
        return str(period), end
    return None, success.end_date


def assess(facts: DagFacts, now: datetime, grace: timedelta, tz: str) -> dict[str, Any]:
    """One DAG's health entry; ``status`` is ok, late, failed, never_ran or unknown."""
    entry: dict[str, Any] = {
        "dag_id": facts.dag_id, "money_job": facts.dag_id in config.MONEY_DAG_IDS, "paused": facts.paused,
        "schedule": facts.schedule, "next_run_after": _iso(None if facts.paused else facts.next_run_after),
        "last_run": None if facts.last_run is None else {
            "logical_date": _iso(facts.last_run.logical_date), "state": facts.last_run.state,
            "start": _iso(facts.last_run.start_date), "end": _iso(facts.last_run.end_date),
            "run_type": facts.last_run.run_type},
        "last_completed": None, "lag_seconds": None, "late_after_seconds": None,
    }
    if not facts.known:
        entry["status"] = "unknown"
        return entry
    allowed = (facts.interval or timedelta(days=1)) + grace
    entry["late_after_seconds"] = int(allowed.total_seconds())
    if facts.last_success is not None:
        completed, until = covered_until(facts.dag_id, facts.last_success, tz)
        entry["last_completed"] = completed
        if until is not None:
            entry["lag_seconds"] = max(0, int((now - until).total_seconds()))
    if facts.last_run is not None and facts.last_run.state == "failed":
        entry["status"] = "failed"
    elif facts.last_success is None:
        entry["status"] = "never_ran"
    elif entry["lag_seconds"] is not None and entry["lag_seconds"] > allowed.total_seconds():
        entry["status"] = "late"
    else:
        entry["status"] = "ok"
    return entry


def report(dags: list[DagFacts], now: datetime, grace: timedelta, tz: str) -> tuple[int, dict[str, Any]]:
    """The endpoint's status code and body."""
    entries = [assess(d, now, grace, tz) for d in dags]
    unhealthy = [e["dag_id"] for e in entries if e["money_job"] and e["status"] != "ok"]
    body = {"status": "ok" if not unhealthy else "unhealthy", "checked_at": _iso(now),
            "unhealthy_money_jobs": unhealthy, "jobs": {e["dag_id"]: e for e in entries}}
    return (503 if unhealthy else 200), body


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def grace_period() -> timedelta:
    return config.health_grace()


# --- Airflow's metadata ------------------------------------------------------------------------
def snapshot() -> list[DagFacts]:
    """The facts for every DAG of contracts.md, from Airflow's metadata database."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def run_facts(run: DagRun | None) -> RunFacts | None:
        if run is None:
            return None
        return RunFacts(run.logical_date, str(run.state.value if hasattr(run.state, "value") else run.state),
                        run.start_date, run.end_date, str(getattr(run.run_type, "value", run.run_type)))

    out = []
    with create_session() as session:
        for dag_id in config.SCHEDULES:
            model = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
            latest = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                                     .order_by(DagRun.run_after.desc()).limit(1)).first()
            success_order = DagRun.logical_date.desc() if dag_id in DATED else DagRun.end_date.desc()
            success = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.state == "success")
                                      .order_by(success_order).limit(1)).first()
            interval = None
            if model is not None and model.next_dagrun_data_interval_start and model.next_dagrun_data_interval_end:
                interval = model.next_dagrun_data_interval_end - model.next_dagrun_data_interval_start
            out.append(DagFacts(
                dag_id=dag_id, known=model is not None and not model.is_stale,
                paused=bool(model.is_paused) if model is not None else True,
                schedule=model.timetable_summary if model is not None else config.SCHEDULES[dag_id].cron,
                interval=interval, next_run_after=model.next_dagrun_create_after if model is not None else None,
                last_run=run_facts(latest), last_success=run_facts(success)))
    return out


def create_app():  # noqa: ANN201 - a FastAPI app
    """The app the plugin mounts at ``/health`` on Airflow's API server (no auth: it reveals
    schedules and states, no data; put it behind the same network rules as the UI)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="investment-jobs health", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/jobs")
    def jobs() -> JSONResponse:
        import pendulum

        now = pendulum.now("UTC")  # clock-ok: lag is measured against the present
        status, body = report(snapshot(), now, grace_period(), config.cron_timezone())
        return JSONResponse(body, status_code=status)

    return app
