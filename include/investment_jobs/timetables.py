"""Timetables of the jobs, with scheduled runs switchable off.

``ENABLE_CRON_JOBS=false`` must stop the scheduled runs while manual runs, ``make job`` and
backfills still work. A schedule of None would stop backfills too (Airflow refuses to backfill a
non-periodic DAG), so instead a DAG keeps its cron timetable in a variant that offers no run to
the scheduler, which asks with the DAG's own ``catchup`` (always False here), while a backfill
still gets every interval or partition. Registered from ``plugins/investment_jobs_plugin.py`` so
the scheduler can deserialise them.
"""

from __future__ import annotations

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.timetables.trigger import CronPartitionTimetable


class CronDataIntervalUnscheduled(CronDataIntervalTimetable):
    """A CronDataIntervalTimetable that never schedules on its own (backfills and manual runs only)."""

    @property
    def summary(self) -> str:
        return f"{self._expression} (scheduled runs off: ENABLE_CRON_JOBS=false)"

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if not restriction.catchup:
            return None
        return super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )


class BusinessDatePartitions(CronPartitionTimetable):
    """CronPartitionTimetable keyed by business date, with two corrections:

    - A negative ``run_offset`` always counts back from the run's own tick, also across a DST gap.
      Airflow 3.3's steps back with "the latest tick at or before the run": when the run's tick
      falls in a gap (00:30 does not exist in America/Santiago on 2026-09-06, so it runs at 01:30),
      that is the run's own tick, so the run gets its own, unfinished date as its key, the next
      run gets the same key, and the day before is never scheduled. Here a step back is strictly
      earlier.
    - A backfill's range is business dates, both included: ``--from-date 2026-02-01 --to-date
      2026-02-28`` runs the 1st to the 28th. Airflow compares the bound with the tick of D (00:30
      on D), which would leave the last date out at a midnight bound.
    """

    def iter_partition_dagrun_infos(self, *, earliest, latest):  # noqa: ANN001, ANN201 - Airflow's signature
        from datetime import timedelta

        # Wall-clock bounds (Airflow re-reads them in the zone): from just before the first date
        # begins (a date whose midnight falls in a DST gap still has its tick) to the end of the last.
        first = earliest.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(microseconds=1)
        last = latest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1, microseconds=-1)
        return super().iter_partition_dagrun_infos(earliest=first, latest=last)

    def _get_partition_date(self, *, run_date):  # noqa: ANN001, ANN202 - Airflow's own signature
        from datetime import timedelta

        from airflow._shared.timezones.timezone import coerce_datetime

        if self._run_offset >= 0:
            return super()._get_partition_date(run_date=run_date)
        partition_date = coerce_datetime(run_date)
        for _ in range(-self._run_offset):
            probe, earlier = partition_date, self._get_prev(partition_date)
            # croniter answers a probe inside a DST gap's hour with the gap's own tick: probe earlier
            for _hour in range(48):
                if earlier < partition_date:
                    break
                probe -= timedelta(hours=1)
                earlier = self._get_prev(probe)
            partition_date = earlier
        return partition_date


class CronPartitionUnscheduled(BusinessDatePartitions):
    """A BusinessDatePartitions that never schedules on its own; backfills by partition still work
    (they walk ``iter_partition_dagrun_infos``, not the scheduler's next run)."""

    @property
    def summary(self) -> str:
        return f"{self._expression} (scheduled runs off: ENABLE_CRON_JOBS=false)"

    def next_dagrun_info_v2(self, *, last_dagrun_info: DagRunInfo | None,
                            restriction: TimeRestriction) -> DagRunInfo | None:
        if not restriction.catchup:
            return None
        return super().next_dagrun_info_v2(last_dagrun_info=last_dagrun_info, restriction=restriction)
