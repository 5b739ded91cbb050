"""The stand-in's data is deterministic and plausible: each day opens at the previous close."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from investment_jobs.ml_engine.validation import DailyItem, validate_item
from investment_jobs_dev.standins.ml_engine_data import EngineAccount, daily_item, demo_account_id

ACCOUNT = EngineAccount(demo_account_id(7, 1), date(2025, 3, 1), None, Decimal("25000.00"))


@given(st.dates(min_value=date(2025, 3, 1), max_value=date(2030, 1, 1)))
def test_each_day_opens_at_the_previous_close_and_validates(day: date) -> None:
    today = daily_item(7, ACCOUNT, day)
    yesterday = daily_item(7, ACCOUNT, day - timedelta(days=1))
    assert today["opening_balance"] == yesterday["closing_balance"]
    assert isinstance(validate_item(today, day), DailyItem)
    assert abs(Decimal(today["daily_return_percentage"])) < 5


def test_first_day_opens_at_the_initial_investment() -> None:
    assert daily_item(7, ACCOUNT, date(2025, 3, 1))["opening_balance"] == "25000.00"


def test_same_inputs_same_item() -> None:
    assert daily_item(7, ACCOUNT, date(2026, 1, 5)) == daily_item(7, ACCOUNT, date(2026, 1, 5))
    assert daily_item(7, ACCOUNT, date(2026, 1, 5)) != daily_item(8, ACCOUNT, date(2026, 1, 5))
