"""Business date and period of a run: from the run's logical date, never from the wall clock.

contracts.md: the business date is the calendar date of the run's logical date in
``CRON_TIMEZONE``; the monthly period is that date's month. A run whose date or period has not
ended yet must fail before it writes anything.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class BusinessDateNotEnded(Exception):
    """The run asks for a business date or period that is still open."""


def business_date_of(logical_date: datetime, timezone: str) -> date:
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be timezone-aware")
    return logical_date.astimezone(ZoneInfo(timezone)).date()


def end_of_business_date(business_date: date, timezone: str) -> datetime:
    """The instant the business date ends: midnight of the next day in the schedule's zone."""
    return datetime.combine(business_date + timedelta(days=1), time.min, tzinfo=ZoneInfo(timezone))


def require_ended(business_date: date, timezone: str, now: datetime) -> None:
    """Raise unless ``business_date`` has ended at ``now`` (the run's own start time)."""
    ends = end_of_business_date(business_date, timezone)
    if now < ends:
        raise BusinessDateNotEnded(
            f"business date {business_date.isoformat()} has not ended yet: it ends at "
            f"{ends.isoformat()} ({timezone}); run it after that, or pick an earlier logical date"
        )


def parse_business_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a date in YYYY-MM-DD form: {text!r}") from exc


def period_of(logical_date: datetime, timezone: str) -> tuple[str, date, date]:
    """The monthly period of a run: ('YYYY-MM', first day, last day) of the logical date's month."""
    first = business_date_of(logical_date, timezone).replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return f"{first:%Y-%m}", first, next_first - timedelta(days=1)


def require_period_ended(last_day: date, timezone: str, now: datetime) -> None:
    """Raise unless the month whose last day is ``last_day`` has ended at ``now``."""
    ends = end_of_business_date(last_day, timezone)
    if now < ends:
        raise BusinessDateNotEnded(
            f"period {last_day:%Y-%m} has not ended yet: it ends at {ends.isoformat()} ({timezone}); "
            "run it after that, or pick a logical date in an earlier month"
        )
