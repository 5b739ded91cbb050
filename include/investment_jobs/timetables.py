"""Timetables of the jobs: cron data intervals, with scheduled runs switchable off.

``ENABLE_CRON_JOBS=false`` must stop the scheduled runs while manual runs, ``make job`` and
backfills still work. A schedule of None would stop backfills too (Airflow refuses to backfill a
non-periodic DAG), so instead the DAG keeps its cron data-interval timetable in this variant:
it offers no run to the scheduler, which asks with the DAG's own ``catchup`` (always False
here), while a backfill, which always asks with ``catchup=True``, still gets every interval.
Registered from ``plugins/investment_jobs_plugin.py`` so the scheduler can deserialise it.
"""

from __future__ import annotations

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable


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
