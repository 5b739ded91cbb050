"""``GET /health/jobs``: is every money job on time? (contracts.md, Operator surface)

Per DAG: paused or not, schedule, last run (logical date or partition, state, start, end), the
last business date or period a run completed, the next scheduled run, and how far it lags; per
money job with dates, its deadline and the business dates with no stored partition (daily: of
the last ``HEALTH_LOOKBACK_DAYS``, 35; monthly: of the last complete month, with whether that
month is distributed). HTTP 200 when every money job (daily_performance,
monthly_distribution, withdrawal_processing) is on time, 503 when one is late, missed its
deadline, never ran, or its last run failed.

*Lag* is how long the job's work has been uncovered: for daily_performance, the time since the
end of the last business date a run completed; for withdrawal_processing, since its last
successful run ended. Those are *late* when their lag exceeds one schedule interval plus
``HEALTH_GRACE_MINUTES`` (120). Deadlines: yesterday's business date must be stored by
``DAILY_DEADLINE`` (06:00 today), and the last complete month distributed by its deadline (the
contract cron's time on the 1st plus ``MONTHLY_DEADLINE``, 24). This rule sees what Airflow's
Deadline Alerts cannot: a run that was never created (a paused DAG, a scheduler that is down, a
month whose rollup waits for a missing day). The decision (:func:`assess`) is pure;
:func:`snapshot` reads Airflow's metadata database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from investment_jobs import config
from investment_jobs.business_dates import (
    Period,
    business_date_of_run,
    deadline_after,
    end_of_business_date,
    period_deadline,
    period_of_run,
)

DATED = {"daily_performance": "business_date", "monthly_distribution": "period"}


@dataclass(frozen=True)
class RunFacts:
    logical_date: datetime | None
    state: str
    start_date: datetime | None
    end_date: datetime | None
    run_type: str
    partition_key: str | None = None
    run_after: datetime | None = None


@dataclass(frozen=True)
class Deadline:
    """What is due when: ``subject`` (a date or period), due at ``due``; ``met`` when it is stored."""

    subject: str
    due: datetime
    met: bool


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
    # dated jobs: the ended business dates with no stored partition (daily: of the lookback window;
    # monthly: of the last complete month, what its rollup waits for)
    missing_dates: list[date] | None = None
    deadline: Deadline | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def covered_until(dag_id: str, success: RunFacts, tz: str) -> tuple[str | None, datetime | None]:
    """What the last successful run completed (business date, period or nothing) and the moment
    up to which the job's work is done."""
    when = success.logical_date or success.run_after
    if dag_id in DATED and (success.partition_key or when is not None):
        if DATED[dag_id] == "business_date":
            day = business_date_of_run(success.partition_key, success.logical_date, when, tz)
            return day.isoformat(), end_of_business_date(day, tz)
        period = period_of_run(success.partition_key, success.logical_date, when, tz)
        return str(period), end_of_business_date(period.last_day, tz)
    return None, success.end_date


def assess(facts: DagFacts, now: datetime, grace: timedelta, tz: str) -> dict[str, Any]:
    """One DAG's health entry; ``status`` is ok, late, deadline_missed, failed, never_ran or unknown."""
    entry: dict[str, Any] = {
        "dag_id": facts.dag_id, "money_job": facts.dag_id in config.MONEY_DAG_IDS, "paused": facts.paused,
        "schedule": facts.schedule, "next_run_after": _iso(None if facts.paused else facts.next_run_after),
        "last_run": None if facts.last_run is None else {
            "logical_date": _iso(facts.last_run.logical_date), "partition_key": facts.last_run.partition_key,
            "state": facts.last_run.state, "start": _iso(facts.last_run.start_date),
            "end": _iso(facts.last_run.end_date), "run_type": facts.last_run.run_type},
        "last_completed": None, "lag_seconds": None, "late_after_seconds": None, **facts.extra,
    }
    if facts.missing_dates is not None:
        entry["missing_business_dates"] = [d.isoformat() for d in facts.missing_dates]
    missed = facts.deadline is not None and not facts.deadline.met and now > facts.deadline.due
    if facts.deadline is not None:
        entry["deadline"] = {"for": facts.deadline.subject, "due": _iso(facts.deadline.due),
                             "met": facts.deadline.met, "missed": missed}
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
    elif missed:
        entry["status"] = "deadline_missed"
    elif facts.last_success is None:
        entry["status"] = "never_ran"
    elif (facts.dag_id != "monthly_distribution"  # a month is judged by its deadline, not an interval
          and entry["lag_seconds"] is not None and entry["lag_seconds"] > allowed.total_seconds()):
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


def daily_deadline(stored: set[str], now: datetime, tz: str, at: str) -> Deadline:
    """Yesterday (the last ended business date) must be stored by ``at`` today."""
    from zoneinfo import ZoneInfo

    yesterday = now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)
    return Deadline(yesterday.isoformat(), deadline_after(yesterday, at, tz), yesterday.isoformat() in stored)


def monthly_deadline(distributed: set[str], now: datetime, tz: str, cron: str, after: timedelta) -> Deadline:
    """The last complete month must be distributed by its deadline."""
    from zoneinfo import ZoneInfo

    last_month = Period.of(now.astimezone(ZoneInfo(tz)).date()).previous()
    return Deadline(last_month.key, period_deadline(last_month, cron, tz, after), last_month.key in distributed)


def missing_in(stored: set[str], first: date, last: date) -> list[date]:
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [d for d in days if d.isoformat() not in stored]


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def grace_period() -> timedelta:
    return config.health_grace()


# --- Airflow's metadata ------------------------------------------------------------------------
def _partition_keys(session: Any, asset_name: str, first: str, last: str) -> set[str]:
    """The partition keys in [first, last] of an asset's events (what the UI's assets view shows)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    rows = session.execute(
        select(AssetEvent.partition_key).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetModel.name == asset_name, AssetEvent.partition_key >= first, AssetEvent.partition_key <= last))
    return {key for (key,) in rows if key}


def snapshot(now: datetime | None = None) -> list[DagFacts]:
    """The facts for every DAG of contracts.md, from Airflow's metadata database."""
    import pendulum
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from investment_jobs.assets import DAILY_PERFORMANCE, MONTHLY_DISTRIBUTIONS
    from investment_jobs.jobs.partitions import lookback_window

    now = now or pendulum.now("UTC")  # clock-ok: health is about the present
    tz = config.cron_timezone()

    def run_facts(run: DagRun | None) -> RunFacts | None:
        if run is None:
            return None
        return RunFacts(run.logical_date, str(run.state.value if hasattr(run.state, "value") else run.state),
                        run.start_date, run.end_date, str(getattr(run.run_type, "value", run.run_type)),
                        run.partition_key, run.run_after)

    out = []
    with create_session() as session:
        for dag_id in config.SCHEDULES:
            model = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
            latest = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                                     .order_by(DagRun.run_after.desc()).limit(1)).first()
            successes = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.state == "success")
                                        .order_by(DagRun.end_date.desc()).limit(200)).all()
            success = _newest_covered(dag_id, [run_facts(r) for r in successes], tz)
            interval = None
            if model is not None and model.next_dagrun_data_interval_start and model.next_dagrun_data_interval_end:
                interval = model.next_dagrun_data_interval_end - model.next_dagrun_data_interval_start
            missing: list[date] | None = None
            deadline: Deadline | None = None
            if dag_id == "daily_performance":
                first, last = lookback_window(config.health_lookback_days(), tz, now)
                stored = _partition_keys(session, DAILY_PERFORMANCE.name, first.isoformat(), last.isoformat())
                missing = missing_in(stored, first, last)
                deadline = daily_deadline(stored, now, tz, config.daily_deadline())
            elif dag_id == "monthly_distribution":
                distributed = _partition_keys(session, MONTHLY_DISTRIBUTIONS.name, "0000", "9999")
                deadline = monthly_deadline(distributed, now, tz, config.SCHEDULES[dag_id].cron,
                                            config.monthly_deadline())
                month = Period.parse(deadline.subject)  # what the month's rollup still waits for
                stored = _partition_keys(session, DAILY_PERFORMANCE.name, month.first_day.isoformat(),
                                         month.last_day.isoformat())
                missing = missing_in(stored, month.first_day, month.last_day)
            extra: dict[str, Any] = {}
            if dag_id == "monthly_distribution" and deadline is not None:
                extra = {"last_complete_month": deadline.subject, "last_complete_month_distributed": deadline.met}
            elif dag_id == "stripe_reconciliation":
                extra = {"last_reconciliation": last_reconciliation()}
            out.append(DagFacts(
                dag_id=dag_id, known=model is not None and not model.is_stale,
                paused=bool(model.is_paused) if model is not None else True,
                schedule=model.timetable_summary if model is not None else config.SCHEDULES[dag_id].cron,
                interval=interval, next_run_after=model.next_dagrun_create_after if model is not None else None,
                last_run=run_facts(latest), last_success=success, missing_dates=missing, deadline=deadline,
                extra=extra))
    return out


def last_reconciliation() -> dict[str, Any] | None:
    """The newest reconciled business date and its differences (from the investment database; a
    database that does not answer is reported, never breaks the page)."""
    try:
        from investment_jobs.db.connect import connect_on_server

        with connect_on_server() as conn:
            row = conn.execute(
                """SELECT business_date, differences, payouts_at_stripe, transfers_at_stripe, run_id
                   FROM investment.stripe_reconciliations ORDER BY business_date DESC LIMIT 1""").fetchone()
    except Exception as exc:  # noqa: BLE001 - the health page reports it
        return {"error": f"investment database not readable: {type(exc).__name__}"}
    if row is None:
        return None
    return {"business_date": row[0].isoformat(), "differences": row[1], "payouts_at_stripe": row[2],
            "transfers_at_stripe": row[3], "run_id": row[4]}


def _newest_covered(dag_id: str, runs: list[RunFacts | None], tz: str) -> RunFacts | None:
    """The successful run that covers the newest business date or period (the one that ended last,
    for a job without dates): a backfill finishing today may be for an old date."""
    runs = [r for r in runs if r is not None]
    if not runs:
        return None
    if dag_id not in DATED:
        return runs[0]

    def covered(run: RunFacts) -> str:
        try:
            return covered_until(dag_id, run, tz)[0] or ""
        except ValueError:  # an odd partition key never breaks the health page
            return ""

    return max(runs, key=covered)


def create_app():  # noqa: ANN201 - a FastAPI app
    """The app the plugin mounts at ``/health`` on Airflow's API server (no auth: it reveals
    schedules, states and dates, no account data; put it behind the same network rules as the UI)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="investment-jobs health", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/jobs")
    def jobs() -> JSONResponse:
        import pendulum

        now = pendulum.now("UTC")  # clock-ok: lag is measured against the present
        status, body = report(snapshot(now), now, grace_period(), config.cron_timezone())
        return JSONResponse(body, status_code=status)

    return app
