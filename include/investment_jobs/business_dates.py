"""Business dates and periods: typed, from the run, never from the wall clock.

contracts.md: the business date is the calendar date of the run's logical date in
``CRON_TIMEZONE`` (or the run's partition key, when it has one); the monthly period is that date's
month. A run whose date or period has not ended yet must fail before it writes anything.

A business date is a :class:`datetime.date` and a period a :class:`Period`; text forms
(``YYYY-MM-DD``, ``YYYY-MM``) exist only at the edges (XCom, logs, SQL parameters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class BusinessDateNotEnded(Exception):
    """The run asks for a business date or period that is still open."""


def month_bounds(day: date) -> tuple[date, date]:
    """The first and the last day of ``day``'s month: the one place month bounds are computed."""
    first = day.replace(day=1)
    next_first = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, next_first - timedelta(days=1)


_PERIOD_TEXT = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, order=True, slots=True)
class Period:
    """A calendar month, the unit monthly_distribution distributes."""

    year: int
    month: int

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, text: str) -> Period:
        """``YYYY-MM`` (or a date in the month, ``YYYY-MM-DD``, as a partition key may carry it)."""
        match = _PERIOD_TEXT.fullmatch(text[:7]) if len(text) in (7, 10) else None
        if match is None or (len(text) == 10 and not _is_date(text)):
            raise ValueError(f"not a period in YYYY-MM form: {text[:40]!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return month_bounds(self.first_day)[1]

    def previous(self) -> Period:
        return Period.of(self.first_day - timedelta(days=1))

    def __str__(self) -> str:
        return self.key


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def business_date_of(logical_date: datetime, timezone: str) -> date:
    if logical_date.tzinfo is None:
        raise ValueError("logical_date must be timezone-aware")
    return logical_date.astimezone(ZoneInfo(timezone)).date()


def period_of(logical_date: datetime, timezone: str) -> Period:
    """The monthly period of a run: the month of its logical date in ``timezone``."""
    return Period.of(business_date_of(logical_date, timezone))


def end_of_business_date(business_date: date, timezone: str) -> datetime:
    """The instant the business date ends: midnight of the next day in the schedule's zone."""
    return datetime.combine(business_date + timedelta(days=1), time.min, tzinfo=ZoneInfo(timezone))


def start_of_business_date(business_date: date, timezone: str) -> datetime:
    """The instant the business date begins in the schedule's zone (a logical date that means D)."""
    return datetime.combine(business_date, time.min, tzinfo=ZoneInfo(timezone))


def require_ended(business_date: date, timezone: str, now: datetime) -> None:
    """Raise unless ``business_date`` has ended at ``now`` (the run's own start time)."""
    ends = end_of_business_date(business_date, timezone)
    if now < ends:
        raise BusinessDateNotEnded(
            f"business date {business_date.isoformat()} has not ended yet: it ends at "
            f"{ends.isoformat()} ({timezone}); run it after that, or pick an earlier logical date"
        )


def require_period_ended(period: Period, timezone: str, now: datetime) -> None:
    """Raise unless ``period`` has ended at ``now``."""
    ends = end_of_business_date(period.last_day, timezone)
    if now < ends:
        raise BusinessDateNotEnded(
            f"period {period} has not ended yet: it ends at {ends.isoformat()} ({timezone}); "
            "run it after that, or pick a logical date in an earlier month"
        )


def last_complete_month(today: date) -> Period:
    """The month before ``today``'s (the demo shows it)."""
    return Period.of(today).previous()
