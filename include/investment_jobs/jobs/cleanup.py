"""data_cleanup: delete old failed transactions, archive old closed accounts, in short batches.

Windows count from the run's business date B (the logical date's date in CRON_TIMEZONE), never
from the wall clock, so a backfilled run does what it would have done on its day:

- a ``failed`` transaction is deleted when its creation date is more than
  TRANSACTION_RETENTION_DAYS (90) days before B and nothing references it (a distribution or a
  withdrawal request);
- a ``closed`` account becomes ``archived`` (the row is kept) when its closing date is more than
  CLOSED_ACCOUNT_ARCHIVE_DAYS (365) days before B, unless it has a withdrawal that has not ended
  or a month it was active in that has no distribution yet.

Work goes in batches of CLEANUP_BATCH_SIZE rows, each its own short transaction, so no batch
holds its locks for long. ``dry_run`` counts what would happen and changes nothing.
"""

from __future__ import annotations

import time as clock
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from psycopg import sql

if TYPE_CHECKING:
    import psycopg

OPEN_WITHDRAWAL = ("pending", "approved", "processing")

# Referenced: a distribution or a request points at it, or it belongs to a request that has not ended.
_REFERENCED = sql.SQL("""(EXISTS (SELECT 1 FROM investment.distributions d WHERE d.transaction_id = t.id)
       OR EXISTS (SELECT 1 FROM investment.withdrawal_requests w WHERE w.transaction_id = t.id)
       OR EXISTS (SELECT 1 FROM investment.withdrawal_requests w
                  WHERE w.id = t.withdrawal_request_id AND w.status = ANY(%(open)s)))""")
_OLD_FAILED = sql.SQL("""
    FROM investment.transactions t
    WHERE t.status = 'failed'
      AND t.created_at < %(cutoff_at)s
""")
_PARTS = {"old_failed": _OLD_FAILED, "referenced": _REFERENCED}
COUNT_REFERENCED = sql.SQL("SELECT count(*) {old_failed} AND {referenced}").format(**_PARTS)
COUNT_DELETABLE = sql.SQL("SELECT count(*) {old_failed} AND NOT {referenced}").format(**_PARTS)
DELETE_A_BATCH = sql.SQL("""
    DELETE FROM investment.transactions
    WHERE id IN (SELECT t.id {old_failed} AND NOT {referenced} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)
""").format(**_PARTS)

# Closed long enough, with the reason it must stay closed (NULL: it can be archived).
_ARCHIVE_CANDIDATES = sql.SQL("""(
    SELECT a.id,
           CASE
             WHEN EXISTS (SELECT 1 FROM investment.withdrawal_requests w
                          WHERE w.account_id = a.id AND w.status = ANY(%(open)s))
               THEN 'a withdrawal has not ended'
             WHEN EXISTS (
               SELECT 1 FROM generate_series(
                   date_trunc('month', (a.opened_at AT TIME ZONE %(tz)s)::date),
                   date_trunc('month', (a.closed_at AT TIME ZONE %(tz)s)::date - 1),
                   interval '1 month') m
               WHERE (a.closed_at AT TIME ZONE %(tz)s)::date > (a.opened_at AT TIME ZONE %(tz)s)::date
                 AND NOT EXISTS (SELECT 1 FROM investment.distributions d
                                 WHERE d.account_id = a.id AND d.period = to_char(m, 'YYYY-MM')))
               THEN 'a month it was active in is not distributed yet'
           END AS keep_reason
    FROM investment.accounts a
    WHERE a.status = 'closed' AND a.closed_at < %(cutoff_at)s
) c""")
KEPT_CLOSED = sql.SQL("""
    SELECT keep_reason, count(*), (array_agg(id::text ORDER BY id))[1:20] FROM {candidates}
    WHERE keep_reason IS NOT NULL GROUP BY 1 ORDER BY 1
""").format(candidates=_ARCHIVE_CANDIDATES)
COUNT_ARCHIVABLE = sql.SQL("SELECT count(*) FROM {candidates} WHERE keep_reason IS NULL").format(
    candidates=_ARCHIVE_CANDIDATES)
ARCHIVE_A_BATCH = sql.SQL("""
    UPDATE investment.accounts SET status = 'archived'
    WHERE id IN (SELECT c.id FROM {candidates} WHERE c.keep_reason IS NULL LIMIT %(batch)s) AND status = 'closed'
""").format(candidates=_ARCHIVE_CANDIDATES)


def _params(business_date: date, days: int, tz: str) -> dict[str, Any]:
    """A row is old enough when its date (in tz) is before the cutoff date, i.e. its timestamp is
    before the cutoff date's midnight in tz: a bound the (status, created_at) index can use."""
    cutoff = business_date - timedelta(days=days)
    return {"cutoff": cutoff, "cutoff_at": datetime.combine(cutoff, time.min, tzinfo=ZoneInfo(tz)), "tz": tz,
            "open": list(OPEN_WITHDRAWAL)}


def _in_batches(conn: psycopg.Connection, statement: sql.Composable, params: dict[str, Any]) -> tuple[int, int, float]:
    """Run ``statement`` (which changes at most %(batch)s rows) until it changes none, each time in
    its own short transaction. Returns (rows, batches, the longest batch in ms)."""
    rows, batches, longest = 0, 0, 0.0  # float-ok: seconds
    while True:
        started = clock.perf_counter()
        with conn.transaction():
            n = conn.execute(statement, params).rowcount
        longest = max(longest, clock.perf_counter() - started)
        if n == 0:
            return rows, batches, round(longest * 1000, 1)
        rows += n
        batches += 1


def _dry_run_or_batches(conn: psycopg.Connection, result: dict[str, Any], params: dict[str, Any], dry_run: bool,
                        would: tuple[str, sql.Composable], does: tuple[str, sql.Composable], batch_size: int
                        ) -> dict[str, Any]:
    """A dry run counts what ``does`` would change (``would``); a real run changes it in batches."""
    if dry_run:
        result[would[0]] = conn.execute(would[1], params).fetchone()[0]
        conn.rollback()
        return result
    changed, batches, longest_ms = _in_batches(conn, does[1], {**params, "batch": batch_size})
    result.update({does[0]: changed, "batches": batches, "longest_batch_ms": longest_ms})
    return result


def delete_failed_transactions(conn: psycopg.Connection, business_date: date, retention_days: int,
                               batch_size: int, tz: str, dry_run: bool) -> dict[str, Any]:
    params = _params(business_date, retention_days, tz)
    referenced = conn.execute(COUNT_REFERENCED, params).fetchone()[0]
    conn.commit()
    result: dict[str, Any] = {"cutoff_date": params["cutoff"].isoformat(), "skipped_referenced": referenced}
    return _dry_run_or_batches(conn, result, params, dry_run, ("would_delete", COUNT_DELETABLE),
                               ("deleted", DELETE_A_BATCH), batch_size)


def archive_closed_accounts(conn: psycopg.Connection, business_date: date, archive_days: int, batch_size: int,
                            tz: str, dry_run: bool) -> dict[str, Any]:
    params = _params(business_date, archive_days, tz)
    kept = conn.execute(KEPT_CLOSED, params).fetchall()
    conn.commit()
    result: dict[str, Any] = {
        "cutoff_date": params["cutoff"].isoformat(),
        "skipped": {reason: {"count": n, "account_ids": ids} for reason, n, ids in kept},
    }
    return _dry_run_or_batches(conn, result, params, dry_run, ("would_archive", COUNT_ARCHIVABLE),
                               ("archived", ARCHIVE_A_BATCH), batch_size)


def summarise(business_date: date, dry_run: bool, deleted: dict[str, Any], archived: dict[str, Any],
              months: dict[str, Any]) -> dict[str, Any]:
    """The run's summary line: what was (or, in a dry run, would be) deleted and archived."""
    transactions = {k: v for k, v in deleted.items() if k != "started_at"}
    return {"job_name": "data_cleanup", "business_date": business_date.isoformat(), "dry_run": dry_run,
            "transactions": transactions, "accounts": archived, "daily_months": months,
            "processed": deleted.get("deleted", 0) + archived.get("archived", 0) + len(months.get("archived", [])),
            "error_count": 0}

