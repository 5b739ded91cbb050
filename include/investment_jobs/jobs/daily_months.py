"""The monthly partitions of ``daily_performance`` (migration 0012): which months are archived, and
archiving whole old months for data_cleanup.

A month is archived by detaching its partition and moving it into schema ``investment_archive``:
no row is deleted or rewritten, and the lock on ``daily_performance`` lasts as long as the catalog
change. Only a month whose distribution run completed (its ``distributions`` partition is stored)
is archived: a month still to be distributed keeps its days. Once archived, a month is never
written again: the daily and monthly jobs refuse its dates with the reason, and
``investment.ensure_daily_partition`` refuses to make the month anew.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from psycopg import sql

from investment_jobs.business_dates import Period
from investment_jobs.jobs.daily import CHAIN_LOCK  # the lock every date's persist holds

if TYPE_CHECKING:
    import psycopg

ARCHIVE_SCHEMA = "investment_archive"
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'"  # never queue long behind a reader, blocking the rest

ARCHIVED = "SELECT archived_table, archived_at FROM investment.archived_daily_months WHERE month = %s"
# The month partitions of daily_performance, oldest first: (month 'YYYY-MM', table name).
PARTITIONS = """
    SELECT to_char(lower_bound, 'YYYY-MM'), c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([0-9-]+)''\\)')::date
                        AS lower_bound) b
    WHERE i.inhparent = 'investment.daily_performance'::regclass
    ORDER BY lower_bound
"""
DISTRIBUTED = "SELECT 1 FROM investment.stored_partitions WHERE asset = 'distributions' AND partition_key = %s"
RECORD = """
    INSERT INTO investment.archived_daily_months (month, archived_table, run_id) VALUES (%s, %s, %s)
"""
COUNT_ROWS = "UPDATE investment.archived_daily_months SET rows = (SELECT count(*) FROM {table}) WHERE month = %s"


class MonthArchived(Exception):
    """A date or period of a month whose daily rows data_cleanup archived: it is not written again."""


def refuse_if_archived(conn: psycopg.Connection, period: Period) -> None:
    """Raise :class:`MonthArchived` for a month data_cleanup archived, in words an operator can act on."""
    row = conn.execute(ARCHIVED, (period.key,)).fetchone()
    conn.rollback()
    if row:
        raise MonthArchived(
            f"the daily rows of {period.key} were archived by data_cleanup on {row[1]:%Y-%m-%d} (into "
            f"{row[0]}, DAILY_PERFORMANCE_RETENTION_MONTHS): a date or the distribution of that month is not "
            "computed again. Nothing was written.")


def archive_cutoff(business_date: date, retention_months: int) -> Period:
    """The first month kept: ``retention_months`` whole months before B's month."""
    month_index = business_date.year * 12 + business_date.month - 1 - retention_months
    return Period(month_index // 12, month_index % 12 + 1)


def archive_old_months(conn: psycopg.Connection, business_date: date, retention_months: int, run_id: str,
                       dry_run: bool) -> dict[str, Any]:
    """Archive every month before the cutoff whose distribution is stored; each in its own short
    transaction. 0 months of retention: nothing is archived. A dry run lists what would be."""
    if retention_months <= 0:
        return {"retention_months": 0, "archived": [], "kept": {}}
    cutoff = archive_cutoff(business_date, retention_months)
    partitions = [(month, table, conn.execute(DISTRIBUTED, (month,)).fetchone() is not None)
                  for month, table in conn.execute(PARTITIONS).fetchall() if month < cutoff.key]
    conn.commit()  # each archive below is a transaction of its own, not a savepoint of this one
    archived: list[str] = []
    kept: dict[str, str] = {}
    for month, table, distributed in partitions:
        if not distributed:
            kept[month] = "not distributed yet"
            continue
        if dry_run:
            archived.append(month)
            continue
        target = sql.Identifier(ARCHIVE_SCHEMA, table)
        with conn.transaction():
            conn.execute(LOCK_TIMEOUT)
            conn.execute(CHAIN_LOCK)  # no persist is between its partition check and its upsert
            conn.execute(sql.SQL("ALTER TABLE investment.daily_performance DETACH PARTITION {}").format(
                sql.Identifier("investment", table)))
            conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier("investment", table), sql.Identifier(ARCHIVE_SCHEMA)))
            conn.execute(RECORD, (month, f"{ARCHIVE_SCHEMA}.{table}", run_id))
        with conn.transaction():  # counted after the lock is gone: the table is the archive's alone now
            conn.execute(sql.SQL(COUNT_ROWS).format(table=target), (month,))
        archived.append(month)
    conn.rollback()
    result: dict[str, Any] = {"retention_months": retention_months, "first_month_kept": cutoff.key, "kept": kept}
    result["would_archive" if dry_run else "archived"] = archived
    return result
