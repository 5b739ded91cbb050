"""The business date comes from the run's logical date, never from the wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from investment_jobs.business_dates import (
    BusinessDateNotEnded,
    Period,
    business_date_of,
    end_of_business_date,
    month_bounds,
    require_ended,
)


def test_business_date_is_the_logical_dates_calendar_date_in_the_schedule_zone() -> None:
    logical = datetime(2026, 1, 5, 0, 30, tzinfo=UTC)
    assert business_date_of(logical, "UTC") == date(2026, 1, 5)
    # 23:30 UTC on the 5th is already the 6th in Tokyo and still the 5th in New York.
    late = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
    assert business_date_of(late, "Asia/Tokyo") == date(2026, 1, 6)
    assert business_date_of(late, "America/New_York") == date(2026, 1, 5)


def test_naive_logical_dates_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        business_date_of(datetime(2026, 1, 5), "UTC")  # noqa: DTZ001


def test_a_day_ends_at_the_next_midnight_in_its_zone() -> None:
    end = end_of_business_date(date(2026, 3, 28), "Europe/Madrid")
    assert end.astimezone(UTC) == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


def test_open_days_are_refused_and_ended_days_pass() -> None:
    day = date(2026, 1, 5)
    end = end_of_business_date(day, "UTC")
    require_ended(day, "UTC", end)  # the first instant after the day
    with pytest.raises(BusinessDateNotEnded, match="2026-01-05 has not ended yet"):
        require_ended(day, "UTC", end - timedelta(microseconds=1))


@pytest.mark.parametrize(("text", "period"), [("2026-01", Period(2026, 1)), ("2026-12", Period(2026, 12)),
                                            ("2026-02-01", Period(2026, 2))])  # a partition key's form
def test_a_period_is_parsed_from_its_text(text: str, period: Period) -> None:
    assert Period.parse(text) == period and str(period) == text[:7]


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "2026-02-30", "2026/01", ""])
def test_text_that_is_not_a_period_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        Period.parse(text)


def test_month_bounds_are_computed_in_one_place() -> None:
    assert month_bounds(date(2024, 2, 10)) == (date(2024, 2, 1), date(2024, 2, 29))
    assert month_bounds(date(2026, 12, 31)) == (date(2026, 12, 1), date(2026, 12, 31))
    assert Period(2026, 12).last_day == date(2026, 12, 31) and Period(2026, 1).previous() == Period(2025, 12)


def test_period_is_the_logical_dates_month() -> None:
    from investment_jobs.business_dates import period_of

    february = period_of(datetime(2026, 2, 1, 1, 0, tzinfo=UTC), "UTC")
    assert (february.key, february.first_day, february.last_day) == ("2026-02", date(2026, 2, 1), date(2026, 2, 28))
    assert period_of(datetime(2024, 2, 10, tzinfo=UTC), "UTC").last_day == date(2024, 2, 29)
    assert period_of(datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "Asia/Tokyo").key == "2027-01"


def test_an_open_month_is_refused() -> None:
    from investment_jobs.business_dates import require_period_ended

    require_period_ended(Period(2026, 1), "UTC", datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(BusinessDateNotEnded, match="period 2026-01 has not ended yet"):
        require_period_ended(Period(2026, 1), "UTC", datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
