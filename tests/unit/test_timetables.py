"""The timetables' own rules, without a scheduler: every business date gets exactly one run."""

from __future__ import annotations

import pendulum
import pytest
from airflow.timetables.base import TimeRestriction
from airflow.timetables.trigger import CronPartitionTimetable

from investment_jobs.timetables import BusinessDatePartitions, CronPartitionUnscheduled

SANTIAGO = "America/Santiago"  # 00:00-00:59 does not exist on 2026-09-06: clocks go 00:00 -> 01:00


def scheduled_keys(timetable, first: pendulum.DateTime, last: pendulum.DateTime) -> list[str]:  # noqa: ANN001
    restriction = TimeRestriction(earliest=first, latest=last, catchup=True)
    keys, info = [], None
    while (info := timetable.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction)):
        keys.append(info.partition_key)
    return keys


def test_santiagos_dst_gap_gives_every_business_date_one_scheduled_run() -> None:
    """The regression this subclass exists for: the 00:30 run of 2026-09-06 falls in the gap and
    runs at 01:30; it is for 2026-09-05, and 2026-09-06 is the next run's."""
    ours = BusinessDatePartitions("30 0 * * *", timezone=SANTIAGO, run_offset=-1, key_format="%Y-%m-%d")
    keys = scheduled_keys(ours, pendulum.datetime(2026, 9, 4, tz=SANTIAGO), pendulum.datetime(2026, 9, 9, tz=SANTIAGO))
    assert keys == ["2026-09-03", "2026-09-04", "2026-09-05", "2026-09-06", "2026-09-07"]


def test_airflow_core_still_repeats_a_key_across_the_gap() -> None:
    """Pins the upstream behaviour our subclass corrects (Airflow 3.3.2: 2026-09-05 is skipped and
    2026-09-06 comes twice). When this fails, Airflow fixed it: BusinessDatePartitions can go."""
    core = CronPartitionTimetable("30 0 * * *", timezone=SANTIAGO, run_offset=-1, key_format="%Y-%m-%d")
    keys = scheduled_keys(core, pendulum.datetime(2026, 9, 4, tz=SANTIAGO), pendulum.datetime(2026, 9, 9, tz=SANTIAGO))
    assert keys == ["2026-09-03", "2026-09-04", "2026-09-06", "2026-09-06", "2026-09-07"]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/Madrid", SANTIAGO, "Pacific/Kiritimati"])
def test_a_backfill_by_date_range_runs_each_date_once_both_ends_included(zone: str) -> None:
    """`airflow backfill create --from-date 2026-09-01 --to-date 2026-09-30` (the UI's form sends
    the same midnight bounds): September, 1st to 30th, in the zone's own dates."""
    timetable = BusinessDatePartitions("30 0 * * *", timezone=zone, run_offset=-1, key_format="%Y-%m-%d")
    keys = [i.partition_key for i in timetable.iter_partition_dagrun_infos(
        earliest=pendulum.datetime(2026, 9, 1, tz="UTC"), latest=pendulum.datetime(2026, 9, 30, tz="UTC"))]
    assert keys == [f"2026-09-{d:02d}" for d in range(1, 31)]
    one_day = [i.partition_key for i in timetable.iter_partition_dagrun_infos(
        earliest=pendulum.datetime(2026, 9, 6, tz="UTC"), latest=pendulum.datetime(2026, 9, 6, tz="UTC"))]
    assert one_day == ["2026-09-06"]


def test_scheduled_runs_off_offers_the_scheduler_nothing_but_backfills_everything() -> None:
    timetable = CronPartitionUnscheduled("30 0 * * *", timezone="UTC", run_offset=-1, key_format="%Y-%m-%d")
    start = pendulum.datetime(2026, 1, 2, tz="UTC")
    asks = TimeRestriction(earliest=start, latest=None, catchup=False)
    assert timetable.next_dagrun_info_v2(last_dagrun_info=None, restriction=asks) is None
    assert "ENABLE_CRON_JOBS=false" in timetable.summary
    keys = [i.partition_key for i in timetable.iter_partition_dagrun_infos(
        earliest=start, latest=start.add(days=2))]
    assert keys == ["2026-01-02", "2026-01-03", "2026-01-04"]
