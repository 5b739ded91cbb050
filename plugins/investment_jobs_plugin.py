"""Registers the package's Airflow extensions: its timetables (business-date partitions, and the
variants for ENABLE_CRON_JOBS=false), the
deadline references of the money jobs, the ``/health/jobs``, ``/stripe/webhooks`` and ``/fund``
apps mounted on the API server, and the fund view's entry in the UI's navigation."""

from airflow.plugins_manager import AirflowPlugin

from investment_jobs.operations import fund_view, webhook_endpoint
from investment_jobs.operations.deadlines import BusinessDateDeadline, PeriodDeadline
from investment_jobs.operations.health import create_app
from investment_jobs.timetables import BusinessDatePartitions, CronDataIntervalUnscheduled, CronPartitionUnscheduled


class InvestmentJobsPlugin(AirflowPlugin):
    name = "investment_jobs"
    timetables = [CronDataIntervalUnscheduled, BusinessDatePartitions, CronPartitionUnscheduled]
    deadline_references = [BusinessDateDeadline, PeriodDeadline]
    fastapi_apps = [{"app": create_app(), "url_prefix": "/health", "name": "investment-jobs health"},
                    {"app": webhook_endpoint.create_app(), "url_prefix": "/stripe",
                     "name": "investment-jobs Stripe webhooks"},
                    {"app": fund_view.create_app(), "url_prefix": "/fund", "name": "investment-jobs fund view"}]
    # The fund view in the UI's navigation, inside the UI (an iframe of /fund/ under /plugin/fund).
    external_views = [{"name": "Fund", "href": "/fund/", "destination": "nav", "url_route": "fund",
                       "nav_top_level": True}]
