"""Every DAG imports cleanly, follows contracts.md, and does nothing at parse time."""

from __future__ import annotations

import os
import socket
from datetime import UTC, date, datetime, timedelta
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
    """The DAG's contract cron and zone: its timetable's, or, for the month that follows its days, its
    deadline's (the contract cron becomes the month's deadline)."""
    if dag.dag_id == "monthly_distribution":
        reference = dag.deadline[0].reference
        return reference.cron, reference.timezone
    timetable = dag.timetable
    expression = getattr(timetable, "expression", None) or timetable._expression  # SDK's, or a core subclass's
    zone = getattr(timetable, "timezone", None) or timetable._timezone
    return expression, str(getattr(zone, "name", zone))


TIMETABLES = {"daily_performance": "BusinessDatePartitions", "monthly_distribution": "PartitionedAssetTimetable"}


@pytest.fixture(scope="module")
def dagbag():  # noqa: ANN201
    """The DAGs as deployed: with their deadlines (the other tests' dag.test() runs go without)."""
    os.environ["DEADLINE_ALERTS"] = "true"
    try:
        return parse()
    finally:
        os.environ["DEADLINE_ALERTS"] = "false"


def test_the_money_dags_have_their_deadlines(dagbag) -> None:  # noqa: ANN001
    daily = dagbag.get_dag("daily_performance").deadline[0].reference
    assert (type(daily).__name__, daily.at, daily.timezone) == ("BusinessDateDeadline", "06:00", "UTC")
    monthly = dagbag.get_dag("monthly_distribution").deadline[0].reference
    assert (type(monthly).__name__, monthly.cron, monthly.hours) == ("PeriodDeadline", "0 1 1 * *", 24.0)
    assert not dagbag.get_dag("withdrawal_processing").deadline


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_follows_the_contract(dagbag, path: Path) -> None:  # noqa: ANN001
    dag = dagbag.get_dag(path.stem)
    assert dag is not None, f"{path.name} must define the DAG {path.stem!r} (dag_id == file name)"
    assert dag.dag_id in config.SCHEDULES
    schedule = config.SCHEDULES[dag.dag_id]
    assert type(dag.timetable).__name__ == TIMETABLES.get(dag.dag_id, "CronDataIntervalTimetable")
    assert cron_of(dag) == (schedule.default_cron, "UTC")
    assert dag.catchup is False
    assert dag.tags and "investment" in dag.tags
    from investment_jobs.operations.dag_settings import TAGS

    assert set(dag.tags) <= TAGS, f"tags outside the vocabulary: {set(dag.tags) - TAGS}"
    assert dag.doc_md and len(dag.doc_md) > 400 and dag.dag_id in dag.doc_md
    if dag.dag_id in config.MONEY_DAG_IDS:
        assert dag.max_active_runs == 1
        assert "money" in dag.tags
    from airflow.providers.standard.operators.hitl import HITLOperator

    for task in dag.tasks:
        assert task.owner == "investment-ops"
        operator_class = getattr(task, "operator_class", type(task))  # a mapped task: the class it maps
        if isinstance(operator_class, type) and issubclass(operator_class, HITLOperator):
            assert task.retries == 0, (dag.dag_id, task.task_id)  # a person's answer is final
            continue
        assert task.retries >= 1
        assert task.retry_exponential_backoff >= 2
        assert task.max_retry_delay is not None
        # One XCom a task: its dict of references and counts. TaskFlow would unroll a `-> dict`
        # into one XCom per key besides it (a round trip each, 20 for a summary): never wanted here.
        partial_kwargs = getattr(task, "partial_kwargs", {})  # a mapped task keeps it there
        assert not getattr(task, "multiple_outputs", partial_kwargs.get("multiple_outputs", False)), \
            (dag.dag_id, task.task_id)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_cron_and_timezone_come_from_the_environment(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = config.SCHEDULES[path.stem]
    monkeypatch.setenv(schedule.env_var, "45 2 * * 1")
    monkeypatch.setenv("CRON_TIMEZONE", "Europe/Madrid")
    monkeypatch.setenv("DEADLINE_ALERTS", "true")
    dag = parse(path).get_dag(path.stem)
    assert cron_of(dag) == ("45 2 * * 1", "Europe/Madrid")


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_disabled_cron_jobs_stop_scheduled_runs_but_not_backfills(path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    monkeypatch.setenv("ENABLE_CRON_JOBS", "false")
    dag = parse(path).get_dag(path.stem)
    # The scheduler's view: the DAG as serialised and read back (needs the plugin registration).
    timetable = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag)).timetable
    start = pendulum.datetime(2026, 1, 1, tz="UTC")  # Airflow's timetables work on pendulum times
    scheduler_asks = TimeRestriction(earliest=start, latest=None, catchup=False)
    # monthly_distribution: its days no longer trigger it; its cron's months can still be backfilled
    if path.stem == "daily_performance":
        assert type(timetable).__name__ == "CronPartitionUnscheduled"
        assert timetable.next_dagrun_info_v2(last_dagrun_info=None, restriction=scheduler_asks) is None
        keys = [i.partition_key for i in timetable.iter_partition_dagrun_infos(
            earliest=start, latest=start + timedelta(days=2))]
        assert keys == ["2026-01-01", "2026-01-02", "2026-01-03"]  # a backfill still gets every date
        return
    assert type(timetable).__name__ == "CronDataIntervalUnscheduled"
    assert timetable.periodic  # so Airflow accepts backfills
    assert timetable.next_dagrun_info(last_automated_data_interval=None, restriction=scheduler_asks) is None
    backfill_asks = TimeRestriction(earliest=start, latest=start + timedelta(days=40), catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=backfill_asks)
    assert info is not None and info.data_interval.start >= start
    manual = timetable.infer_manual_data_interval(run_after=start + timedelta(days=3))
    assert manual.end <= start + timedelta(days=3)


def test_a_scheduled_daily_run_fires_after_its_date_ends_and_carries_it_as_its_key(dagbag) -> None:  # noqa: ANN001
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    timetable = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(
        dagbag.get_dag("daily_performance"))).timetable
    start = pendulum.datetime(2026, 1, 2, tz="UTC")
    info = timetable.next_dagrun_info_v2(last_dagrun_info=None,
                                         restriction=TimeRestriction(earliest=start, latest=None, catchup=True))
    # Business date 2026-01-01: the run fires at 2026-01-02 00:30, once the day has ended.
    assert (info.partition_key, info.run_after) == ("2026-01-01", datetime(2026, 1, 2, 0, 30, tzinfo=UTC))


def test_the_month_waits_for_every_day_of_its_daily_partitions(dagbag) -> None:  # noqa: ANN001
    from investment_jobs.assets import DAILY_PERFORMANCE

    timetable = dagbag.get_dag("monthly_distribution").timetable
    mapper = timetable.default_partition_mapper
    assert type(mapper).__name__ == "RollupMapper" and type(mapper.window).__name__ == "MonthWindow"
    assert type(mapper.wait_policy).__name__ == "WaitForAll"
    assert timetable.asset_condition == DAILY_PERFORMANCE


def test_a_payout_job_refuses_backfills(dagbag) -> None:  # noqa: ANN001
    assert {t.value for t in dagbag.get_dag("withdrawal_processing").allowed_run_types} == {"scheduled", "manual"}


def test_task_order_of_monthly_distribution(dagbag) -> None:  # noqa: ANN001
    dag = dagbag.get_dag("monthly_distribution")
    chain = ["assess_accounts", "compute_fees", "approve_distribution", "distribute", "summarise", "drop_staging"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("assess_accounts").is_setup and dag.get_task("drop_staging").is_teardown


def test_task_order_of_daily_performance(dagbag) -> None:  # noqa: ANN001
    dag = dagbag.get_dag("daily_performance")
    chain = ["fetch_active_accounts", "pull_ml_performance", "store_day", "summarise", "drop_staging"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    assert dag.get_task("drop_staging").is_teardown
    assert dag.get_task("fetch_active_accounts").is_setup


def test_shards_map_the_pull_over_account_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHARDS shapes the DAG as it is parsed: the pull maps over that many ranges; the setup gets
    the count, so its staging has a partition for each."""
    monkeypatch.setenv("SHARDS", "4")
    dag = parse().get_dag("daily_performance")
    pull = dag.get_task("pull_ml_performance")
    assert pull.op_kwargs_expand_input.value == {"shard": [0, 1, 2, 3]}
    assert pull.partial_kwargs["pool"] == "ml_engine"  # the engine sees at most the pool's slots at once
    assert list(dag.get_task("fetch_active_accounts").op_args) == [4]
    monkeypatch.setenv("SHARDS", "0")
    bag = parse()
    assert "SHARDS must be between 1 and 64" in str(bag.import_errors)


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
    """Defect 1 of issue 12, for the scheduler: every scheduled run of 2026 (the infos the scheduler
    creates) and every run a backfill of 2026 creates, in zones either side of UTC and across their
    DST changes, carries the business date it is for as its key, and a scheduled one fires only
    once that date has ended in the zone."""
    import pendulum
    from airflow.timetables.base import TimeRestriction

    from investment_jobs.business_dates import business_date_of_run, end_of_business_date
    from investment_jobs.timetables import BusinessDatePartitions  # the scheduler's side of the DAG's

    timetable = BusinessDatePartitions("30 0 * * *", timezone=zone, run_offset=-1, key_format="%Y-%m-%d")
    start = pendulum.datetime(2026, 1, 2, tz=zone)
    restriction = TimeRestriction(earliest=start, latest=pendulum.datetime(2027, 1, 1, 12, tz=zone), catchup=True)
    last, day, seen = None, date(2026, 1, 1), 0
    while (info := timetable.next_dagrun_info_v2(last_dagrun_info=last, restriction=restriction)):
        assert business_date_of_run(info.partition_key, None, info.run_after, zone) == day, (zone, info)
        assert info.run_after >= end_of_business_date(day, zone)
        last, day, seen = info, day + timedelta(days=1), seen + 1
    assert seen == 365
    backfilled = [i.partition_key for i in timetable.iter_partition_dagrun_infos(
        earliest=pendulum.datetime(2026, 3, 1, tz="UTC"), latest=pendulum.datetime(2026, 3, 31, tz="UTC"))]
    assert backfilled == [f"2026-03-{d:02d}" for d in range(1, 32)]  # `backfill create` 03-01..03-31: both ends


def test_every_question_to_a_person_is_asked_once_per_try(dagbag) -> None:  # noqa: ANN001
    """Issue 15: the HITL steps are not retried (an answer is final; a retry would ask again), and
    each waits with a timeout an operator can set."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    asked = {"monthly_distribution": ["approve_distribution", "resolve_drift"],
             "withdrawal_processing": ["review_withdrawals", "resolve_operator_case"]}
    for dag_id, task_ids in asked.items():
        dag = dagbag.get_dag(dag_id)
        for task_id in task_ids:
            task = dag.get_task(task_id)
            assert issubclass(getattr(task, "operator_class", type(task)), HITLOperator), task_id
            assert task.retries == 0, task_id
    approval = dagbag.get_dag("monthly_distribution").get_task("approve_distribution")
    assert approval.response_timeout == config.distribution_approval_timeout()
    assert {"approve_distribution"} == dagbag.get_dag("monthly_distribution").get_task("distribute").upstream_task_ids \
        - {"assess_accounts"}
