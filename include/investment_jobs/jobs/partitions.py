"""The partitions the jobs have completed (``investment.stored_partitions``) and the ones missing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import psycopg

DAILY = "daily_performance"
MONTHLY = "distributions"

RECORD = """
    INSERT INTO investment.stored_partitions (asset, partition_key, run_id)
    VALUES (%(asset)s, %(key)s, %(run)s)
    ON CONFLICT (asset, partition_key) DO UPDATE SET run_id = EXCLUDED.run_id, stored_at = now()
"""
STORED_DAYS_BETWEEN = """
    SELECT partition_key FROM investment.stored_partitions
    WHERE asset = 'daily_performance' AND partition_key BETWEEN %(first)s AND %(last)s
"""


def record_stored(conn: psycopg.Connection, asset: str, key: str, run_id: str) -> None:
    """Note that ``run_id`` completed partition ``key`` of ``asset`` (a rerun notes itself again)."""
    with conn.transaction():
        conn.execute(RECORD, {"asset": asset, "key": key, "run": run_id})


def lookback_window(lookback_days: int, timezone: str, now: datetime | None = None) -> tuple[date, date]:
    """The last ``lookback_days`` ended business dates: (first, last), last being yesterday in ``timezone``."""
    today = (now or datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()  # clock-ok: the present
    return today - timedelta(days=lookback_days), today - timedelta(days=1)


def missing_business_dates(conn: psycopg.Connection, lookback_days: int, timezone: str,
                           now: datetime | None = None) -> list[date]:
    """The ended business dates of the lookback window that have no stored partition."""
    return missing_between(conn, *lookback_window(lookback_days, timezone, now))


def missing_between(conn: psycopg.Connection, first: date, last: date) -> list[date]:
    """The business dates ``first`` … ``last`` that have no stored partition."""
    stored = {row[0] for row in conn.execute(STORED_DAYS_BETWEEN, {"first": first.isoformat(),
                                                                    "last": last.isoformat()})}
    conn.rollback()
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [d for d in days if d.isoformat() not in stored]
