"""Registers the package's Airflow extensions (the timetable for ENABLE_CRON_JOBS=false)."""

from airflow.plugins_manager import AirflowPlugin
from investment_jobs.timetables import CronDataIntervalUnscheduled


class InvestmentJobsPlugin(AirflowPlugin):
    name = "investment_jobs"
    timetables = [CronDataIntervalUnscheduled]
