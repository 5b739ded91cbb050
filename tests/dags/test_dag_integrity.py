"""Every DAG imports cleanly, follows contracts.md, and does nothing at parse time."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from investment_jobs import config

# DagBag reads Airflow's own metadata tables while it fills: give it the tests' private one.
pytestmark = pytest.mark.usefixtures("airflow_db")

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


class ParseTimeAccess(AssertionError):
    pass


@pytest.fixture
def no_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network (HTTP, PostgreSQL over TCP), Variable or Connection lookup fails the parse."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise ParseTimeAccess(f"side effect at DAG parse time: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    import psycopg

    monkeypatch.setattr(psycopg, "connect", refuse)
    from airflow.sdk import BaseHook, Variable

    monkeypatch.setattr(Variable, "get", refuse)
    monkeypatch.setattr(BaseHook, "get_connection", refuse)


def parse(path: Path | None = None):  # noqa: ANN201
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(path or DAGS))


def test_the_guard_itself_catches_a_parse_time_connection(no_side_effects: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad_dag.py"
    # (DagBag's safe mode only parses files that mention "airflow" and "dag".)
    bad.write_text("# an airflow dag\nimport psycopg\npsycopg.connect('postgresql://127.0.0.1/x')\n")
    bag = parse(bad)
    assert bag.import_errors and "side effect at DAG parse time" in next(iter(bag.import_errors.values()))


def test_every_dag_imports_without_side_effects(no_side_effects: None) -> None:
    bag = parse()
    assert bag.import_errors == {}
    assert len(bag.dags) == len(DAG_FILES) >= 1


def cron_of(dag) -> tuple[str, str]:  # noqa: ANN001
    return dag.timetable.expression, str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone))


@pytest.fixture(scope="module")
def dagbag():  # noqa: ANN201
    return parse()


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_follows_the_contract(dagbag, path: Path) -> None:  # noqa: ANN001
    dag = dagbag.get_dag(path.stem)
    assert dag is not None, f"{path.name} must define the DAG {path.stem!r} (dag_id == file name)"
    assert dag.dag_id in config.SCHEDULES
    schedule = config.SCHEDULES[dag.dag_id]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert cron_of(dag) == (schedule.default_cron, "UTC")
    assert dag.catchup is False
    assert dag.tags and "investment" in dag.tags
    from investment_jobs.operations.dag_settings import TAGS

    assert set(dag.tags) <= TAGS, f"tags outside the vocabulary: {set(dag.tags) - TAGS}"
    assert dag.doc_md and len(dag.doc_md) > 400 and dag.dag_id in dag.doc_md
    if dag.dag_id in config.MONEY_DAG_IDS:
        assert dag.max_active_runs == 1
        assert "money" in dag.tags
    for task in dag.tasks:
        assert task.owner == "investment-ops"
        assert task.retries >= 1
        assert task.retry_exponential_backoff >= 2
        assert task.max_retry_delay is not None


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_cron_and_timezone_come_from_the_environment(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = config.SCHEDULES[path.stem]
    monkeypatch.setenv(schedule.env_var, "45 2 * * 1")
    monkeypatch.setenv("CRON_TIMEZONE", "Europe/Madrid")
    dag = parse(path).get_dag(path.stem)
    assert cron_of(dag) == ("45 2 * * 1", "Europe/Madrid")


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_disabled_cron_jobs_stop_scheduled_runs_but_not_backfills(path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    monkeypatch.setenv("ENABLE_CRON_JOBS", "false")
    dag = parse(path).get_dag(path.stem)
    # The scheduler's view: the DAG as serialised and read back (needs the plugin registration).
    timetable = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag)).timetable
    assert type(timetable).__name__ == "CronDataIntervalUnscheduled"
    assert timetable.periodic  # so Airflow accepts backfills
    import pendulum

    start = pendulum.datetime(2026, 1, 1, tz="UTC")  # Airflow's timetables work on pendulum times
    scheduler_asks = TimeRestriction(earliest=start, latest=None, catchup=False)
    assert timetable.next_dagrun_info(last_automated_data_interval=None, restriction=scheduler_asks) is None
    backfill_asks = TimeRestriction(earliest=start, latest=start + timedelta(days=40), catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=backfill_asks)
    assert info is not None and info.data_interval.start >= start
    manual = timetable.infer_manual_data_interval(run_after=start + timedelta(days=3))
    assert manual.end <= start + timedelta(days=3)


@pytest.mark.parametrize(("dag_id", "logical", "fires"), [
    # Business date 2026-01-01: logical date 2026-01-01 00:30; the run fires a day later.
    ("daily_performance", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), datetime(2026, 1, 2, 0, 30, tzinfo=UTC)),
    # Period 2026-01: logical date 2026-01-01 01:00; the run fires on 2026-02-01 01:00.
    ("monthly_distribution", datetime(2026, 1, 1, 1, 0, tzinfo=UTC), datetime(2026, 2, 1, 1, 0, tzinfo=UTC)),
])
def test_scheduled_runs_fire_after_their_date_or_period_ends(dagbag, dag_id: str, logical: datetime,  # noqa: ANN001
                                                             fires: datetime) -> None:
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag = dagbag.get_dag(dag_id)
    timetable = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag)).timetable
    start = datetime(2026, 1, 1, tzinfo=UTC)
    info = timetable.next_dagrun_info(last_automated_data_interval=None,
                                      restriction=TimeRestriction(earliest=start, latest=None, catchup=True))
    assert (info.logical_date, info.run_after) == (logical, fires)


def test_task_order_of_monthly_distribution(dagbag) -> None:  # noqa: ANN001
    dag = dagbag.get_dag("monthly_distribution")
    chain = ["assess_accounts", "compute_fees", "distribute", "summarise", "drop_staging"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("assess_accounts").is_setup and dag.get_task("drop_staging").is_teardown


def test_task_order_of_daily_performance(dagbag) -> None:  # noqa: ANN001
    dag = dagbag.get_dag("daily_performance")
    chain = ["fetch_active_accounts", "pull_ml_performance", "compute_returns", "persist",
             "update_account_snapshots", "summarise", "drop_staging"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("drop_staging").is_teardown
    assert dag.get_task("fetch_active_accounts").is_setup


def test_every_task_has_an_execution_timeout_an_operator_can_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 2 of issue 12: no task had an execution_timeout, so a stuck call ran forever."""
    assert config.task_execution_timeout() == timedelta(minutes=60)
    monkeypatch.setenv("TASK_EXECUTION_TIMEOUT_MINUTES", "7")
    bag = parse()
    assert bag.dags
    for dag in bag.dags.values():
        for task in dag.tasks:
            assert task.execution_timeout == timedelta(minutes=7), (dag.dag_id, task.task_id)


ZONES = ["America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "UTC", "Europe/Madrid", "Asia/Tokyo",
         "Pacific/Kiritimati", "America/Santiago"]


@pytest.mark.parametrize("zone", ZONES)
def test_scheduled_and_backfilled_runs_process_their_own_date_in_every_zone(zone: str) -> None:
    """Defect 1 of issue 12, for the scheduler: every run a backfill of 2026 would create (the same
    infos the scheduler uses), in zones either side of UTC and across their DST changes, processes
    the business date it is for, and fires only once that date has ended in the zone."""
    import pendulum
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable  # the scheduler's side

    from investment_jobs.business_dates import business_date_of, end_of_business_date

    timetable = CronDataIntervalTimetable("30 0 * * *", timezone=zone)
    start = pendulum.datetime(2026, 1, 1, tz=zone)
    restriction = TimeRestriction(earliest=start, latest=pendulum.datetime(2027, 1, 1, tz=zone), catchup=True)
    last, day, seen = None, start.date(), 0
    while (info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)):
        assert business_date_of(info.logical_date, zone) == day, (zone, info.logical_date)
        assert info.run_after >= end_of_business_date(day, zone)
        last, day, seen = info.data_interval, day + timedelta(days=1), seen + 1
    assert seen == 365
