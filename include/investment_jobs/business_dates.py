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


def business_date_of_run(partition_key: str | None, logical_date: datetime | None, run_after: datetime,
                         timezone: str) -> date:
    """D of a run (contracts.md): its partition key when it has one (``YYYY-MM-DD``), else the
    calendar date of its logical date (a manual run without one: when it was to run) in ``timezone``."""
    if partition_key:
        if len(partition_key) != 10:
            raise ValueError(f"partition key {partition_key[:40]!r} is not a business date (YYYY-MM-DD)")
        try:
            return date.fromisoformat(partition_key)
        except ValueError:
            raise ValueError(f"partition key {partition_key!r} is not a business date (YYYY-MM-DD)") from None
    return business_date_of(logical_date or run_after, timezone)


def period_of_run(partition_key: str | None, logical_date: datetime | None, run_after: datetime,
                  timezone: str) -> Period:
    """P of a run: its partition key when it has one (``YYYY-MM``, or a day of the month), else the
    month of its logical date in ``timezone``."""
    if partition_key:
        return Period.parse(partition_key)
    return period_of(logical_date or run_after, timezone)


def deadline_after(day: date, at: str, timezone: str) -> datetime:
    """The instant ``at`` (``HH:MM``) on the day after ``day`` in ``timezone``: when D's data is due."""
    hours, minutes = _hh_mm(at)
    return datetime.combine(day + timedelta(days=1), time(hours, minutes), tzinfo=ZoneInfo(timezone))


def _hh_mm(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", text.strip())
    if match is None:
        raise ValueError(f"a time of day must be HH:MM (24 h), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def period_deadline(period: Period, cron: str, timezone: str, after: timedelta) -> datetime:
    """When P's distribution is due: the cron's first time on or after the start of the next month
    (in ``timezone``; the contract's ``0 1 1 * *`` gives 01:00 on the 1st), plus ``after``."""
    from croniter import croniter

    start = datetime.combine(period.last_day + timedelta(days=1), time.min, tzinfo=ZoneInfo(timezone))
    fires = croniter(cron, start - timedelta(microseconds=1)).get_next(datetime)
    return fires + after


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
