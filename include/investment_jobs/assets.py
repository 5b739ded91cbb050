"""The package's Airflow assets: what the money jobs produce, one partition per business date or month.

``daily_performance`` emits a partition of :data:`DAILY_PERFORMANCE` keyed ``YYYY-MM-DD`` (the
business date D) when D's rows are stored and its run succeeded; ``monthly_distribution`` is
scheduled on a rollup of a month's daily keys and emits :data:`MONTHLY_DISTRIBUTIONS` keyed
``YYYY-MM`` when every account of the month is distributed. Cheap to import: DAG files use them
at parse time.
"""

from __future__ import annotations

from airflow.sdk import Asset

DAILY_PERFORMANCE = Asset(name="investment.daily_performance",
                          uri="postgres://investment-db:5432/investment/investment/daily_performance")
MONTHLY_DISTRIBUTIONS = Asset(name="investment.distributions",
                              uri="postgres://investment-db:5432/investment/investment/distributions")

DAY_KEY_FORMAT = "%Y-%m-%d"
MONTH_KEY_FORMAT = "%Y-%m"
