"""Registers the package's Airflow extensions: the timetable for ENABLE_CRON_JOBS=false, and the
``/health/jobs`` app mounted on the API server."""

from airflow.plugins_manager import AirflowPlugin

from investment_jobs.operations.health import create_app
from investment_jobs.timetables import CronDataIntervalUnscheduled


class InvestmentJobsPlugin(AirflowPlugin):
    name = "investment_jobs"
    timetables = [CronDataIntervalUnscheduled]
    fastapi_apps = [{"app": create_app(), "url_prefix": "/health", "name": "investment-jobs health"}]
