"""daily_performance: record every active account's performance for ONE business date D.

Steps (each one DAG task, each one database transaction, each safe to retry):

1. ``snapshot_active_accounts``  accounts active on D (contracts.md) into a staging table.
2. ``pull_performance``          page the engine's bulk listing for D; validate each item in
                                 Decimal; COPY good items and rejects into staging tables.
3. ``compute_returns``           reject unknown/inactive/duplicate accounts (set-based), and
                                 compute D's cumulative fields from the stored day before D.
4. ``persist``                   under a lock shared by all dates (chaining D again if another
                                 date was written meanwhile): upsert D's rows and this run's
                                 rejects; recompute the cumulative fields of stored days after D.
5. ``update_account_snapshots``  current_balance only where D is the newest stored day (net of
                                 withdrawals settled after D); total_return_percentage from
                                 the newest stored day.
6. ``summarise``                 one JSON line; fail when rejects exceed the tolerance.
7. ``drop_staging``              teardown.

Cumulative fields (the order-independent definition): for each stored row,
``cumulative_return`` = Σ daily_return of the account's stored rows up to and including it, and
``cumulative_return_percentage`` = the time-weighted chain of daily_return_percentage over the
same rows, rounded to 10 decimals half-even at each step (``investment.twr_step``).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from investment_jobs.config import STAGING_SCHEMA
from investment_jobs.db.staging import Staging
from investment_jobs.ml_engine.client import page_limit
from investment_jobs.money import dumps_lenient
from investment_jobs.performance import DailyItem, Rejected, validate_item

if TYPE_CHECKING:
    import psycopg
    from investment_jobs.ml_engine.client import MLEngineClient

SUMMARY_ID_LIMIT = 100  # ids listed in a summary line; the tables hold all of them


class RejectsOverTolerance(Exception):
    """More items were rejected than DAILY_REJECT_TOLERANCE allows."""


ROLES = ("accounts", "items", "rejects", "ready")


def staging_for(business_date: date, run_id: str) -> Staging:
    return Staging.for_run("dp", business_date.isoformat(), run_id)


def _day(st: Staging) -> date:
    return date.fromisoformat(st.key)


# ---------------------------------------------------------------------------------------------
def _day_before(alias: str) -> str:
    """A lateral join ``p`` to the account's stored day before D: what D's cumulative fields chain from."""
    return f"""
            LEFT JOIN LATERAL (
                SELECT dp.cumulative_return, dp.cumulative_return_percentage
                FROM investment.daily_performance dp
                WHERE dp.account_id = {alias}.account_id AND dp.date < %(d)s
                ORDER BY dp.date DESC LIMIT 1
            ) p ON true"""


def _fill(query: str, st: Staging) -> str:
    return st.fill(query, ROLES)


def snapshot_active_accounts(conn: psycopg.Connection, st: Staging, timezone: str) -> int:
    """Create the run's staging tables and fill the set of accounts active on D."""
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STAGING_SCHEMA}")
        for role in ROLES:
            conn.execute(f"DROP TABLE IF EXISTS {st.table(role)}")
        conn.execute(_fill(
            """
            CREATE UNLOGGED TABLE {accounts} AS
            SELECT a.id AS account_id, a.product_id
            FROM investment.accounts a
            WHERE (a.opened_at AT TIME ZONE %(tz)s)::date <= %(d)s
              AND a.status <> 'suspended'
              AND (a.closed_at IS NULL OR (a.closed_at AT TIME ZONE %(tz)s)::date > %(d)s)
            """, st), {"tz": timezone, "d": _day(st)})
        conn.execute(f"ALTER TABLE {st.table('accounts')} ADD PRIMARY KEY (account_id)")
        conn.execute(_fill(
            """
            CREATE UNLOGGED TABLE {items} (
                account_id uuid NOT NULL,
                opening_balance numeric NOT NULL, closing_balance numeric NOT NULL,
                daily_return numeric NOT NULL, daily_return_percentage numeric NOT NULL,
                trades_executed integer NOT NULL, winning_trades integer NOT NULL,
                losing_trades integer NOT NULL, ml_agent_data jsonb);
            -- stage: 'parse' (the item itself is bad) or 'match' (the book cannot take it)
            CREATE UNLOGGED TABLE {rejects} (account_id text NOT NULL, reason text NOT NULL, item jsonb,
                                             stage text NOT NULL DEFAULT 'parse');
            """, st))
        count = conn.execute(f"SELECT count(*) FROM {st.table('accounts')}").fetchone()[0]
    return int(count)


def pull_performance(conn: psycopg.Connection, client: MLEngineClient, st: Staging, page_size: int,
                     max_pages: int | None = None) -> dict[str, int]:
    """Page D's bulk listing into staging; one page in memory at a time; all or nothing.

    ``max_pages`` bounds the listing (an engine whose cursor never ends fails the run instead of
    filling staging forever); by default it is what D's active accounts can need (see
    :func:`page_limit`). An item the database refuses despite validation becomes a reject with the
    database's reason, never a failed day.
    """
    received = valid = rejected = pages = 0
    day = _day(st)
    if max_pages is None:
        active = conn.execute(f"SELECT count(*) FROM {st.table('accounts')}").fetchone()[0]
        max_pages = page_limit(int(active), page_size)
    with conn.transaction():
        conn.execute(f"TRUNCATE {st.table('items')}, {st.table('rejects')}")
        cur = conn.cursor()
        for page in client.iter_daily_performance(day, page_size, max_pages=max_pages):
            pages += 1
            good: list[tuple[DailyItem, Any]] = []
            bad: list[tuple[Rejected, Any]] = []
            for raw in page:
                outcome = validate_item(raw, day)
                if isinstance(outcome, DailyItem):
                    good.append((outcome, raw))
                else:
                    bad.append((outcome, raw))
            received += len(page)
            refused = _copy_items(conn, cur, st, good)
            if refused:
                bad.extend(refused)
                good = good[:len(good) - len(refused)]  # only the count is used below
            valid += len(good)
            rejected += len(bad)
            if bad:
                with cur.copy(f"COPY {st.table('rejects')} (account_id, reason, item) FROM STDIN") as copy:
                    for reject, raw in bad:
                        copy.write_row((reject.account_id, reject.reason, dumps_lenient(raw)))
        conn.execute(f"ANALYZE {st.table('items')}")
    return {"pages": pages, "received": received, "valid": valid, "rejected": rejected}


def _item_row(item: DailyItem) -> tuple:
    return (item.account_id, item.opening_balance, item.closing_balance, item.daily_return,
            item.daily_return_percentage, item.trades_executed, item.winning_trades, item.losing_trades,
            item.ml_agent_data)


def _copy_items(conn: psycopg.Connection, cur: psycopg.Cursor, st: Staging, items: list[tuple[DailyItem, Any]]
                ) -> list[tuple[Rejected, Any]]:
    """COPY a page of valid items into staging in a savepoint. Should the database still refuse one
    (a case validation missed), the page is written again item by item and each refused item comes
    back as a reject with the database's reason: one odd item never fails the day."""
    import psycopg

    statement = f"COPY {st.table('items')} FROM STDIN"
    refusals = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded, UnicodeEncodeError)
    try:
        with conn.transaction(), cur.copy(statement) as copy:
            for item, _ in items:
                copy.write_row(_item_row(item))
        return []
    except refusals:
        pass
    refused: list[tuple[Rejected, Any]] = []
    for item, raw in items:
        try:
            with conn.transaction(), cur.copy(statement) as copy:
                copy.write_row(_item_row(item))
        except refusals as exc:
            message = getattr(getattr(exc, "diag", None), "message_primary", None) or type(exc).__name__
            refused.append((Rejected(item.account_id, f"the database refused the item: {message[:300]}"), raw))
    return refused


def compute_returns(conn: psycopg.Connection, st: Staging, timezone: str) -> dict[str, int]:
    """Reject items the book cannot take; chain the rest from the stored day before D.

    Returns the chain version it read first: persist re-chains D only if another date was written
    since (a backfill running several dates at once), so the usual run pays for the chain once.
    """
    with conn.transaction():
        version = conn.execute("SELECT version FROM investment.daily_chain_version").fetchone()[0]
        conn.execute(f"DROP TABLE IF EXISTS {st.table('ready')}")
        conn.execute(_fill("DELETE FROM {rejects} WHERE stage = 'match'", st))  # a retry starts afresh
        conn.execute(_fill(
            """
            INSERT INTO {rejects} (account_id, reason, item, stage)
            SELECT i.account_id::text,
                   CASE
                     WHEN d.n > 1 THEN format('%%s items for this account and date; '
                                              'none is taken until the engine sends one', d.n)
                     WHEN a.id IS NULL THEN 'unknown account'
                     ELSE format('account not active on %%s (status %%s, opened %%s, closed %%s)',
                                 %(d)s::date, a.status,
                                 (a.opened_at AT TIME ZONE %(tz)s)::date,
                                 coalesce(((a.closed_at AT TIME ZONE %(tz)s)::date)::text, '-'))
                   END,
                   to_jsonb(i),
                   'match'
            FROM {items} i
            LEFT JOIN (SELECT account_id, count(*) AS n FROM {items} GROUP BY 1 HAVING count(*) > 1) d
                   USING (account_id)
            LEFT JOIN {accounts} s USING (account_id)
            LEFT JOIN investment.accounts a ON a.id = i.account_id
            WHERE d.n IS NOT NULL OR s.account_id IS NULL
            """, st), {"d": _day(st), "tz": timezone})
        conn.execute(_fill(
            """
            CREATE UNLOGGED TABLE {ready} AS
            SELECT i.account_id, s.product_id, %(d)s::date AS date,
                   i.opening_balance, i.closing_balance, i.daily_return, i.daily_return_percentage,
                   coalesce(p.cumulative_return, 0) + i.daily_return AS cumulative_return,
                   investment.twr_step(coalesce(p.cumulative_return_percentage, 0),
                                       i.daily_return_percentage) AS cumulative_return_percentage,
                   i.trades_executed, i.winning_trades, i.losing_trades, i.ml_agent_data
            FROM {items} i
            JOIN {accounts} s USING (account_id)
            """ + _day_before("i") + """
            WHERE NOT EXISTS (SELECT 1 FROM {rejects} r
                              WHERE r.stage = 'match' AND r.account_id = i.account_id::text)
            """, st), {"d": _day(st)})
        ready = conn.execute(f"SELECT count(*) FROM {st.table('ready')}").fetchone()[0]
        rejected = conn.execute(f"SELECT count(*) FROM {st.table('rejects')}").fetchone()[0]
    return {"ready": int(ready), "rejected": int(rejected), "chain_version": int(version)}


def persist(conn: psycopg.Connection, st: Staging, chain_version: int | None = None) -> dict[str, int]:
    """Write D in one transaction: rows, this run's rejects, and later days' cumulative fields.

    Every date's persist holds the same lock and bumps the chain version. When another date was
    written since compute_returns chained D (``chain_version`` differs: several dates at once in a
    backfill), D is chained again here from the stored day before it, so any interleaving of dates
    ends with the rows of a sequential run.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('investment.daily_performance chain'))")
        current = conn.execute("SELECT version FROM investment.daily_chain_version").fetchone()[0]
        rechained_d = 0
        if chain_version is None or current != chain_version:
            rechained_d = conn.execute(_fill(
                """
                UPDATE {ready} t
                SET cumulative_return = coalesce(prev.cumulative_return, 0) + t.daily_return,
                    cumulative_return_percentage = investment.twr_step(
                        coalesce(prev.cumulative_return_percentage, 0), t.daily_return_percentage)
                FROM (SELECT r.account_id, p.cumulative_return, p.cumulative_return_percentage
                      FROM {ready} r """ + _day_before("r") + """) prev
                WHERE prev.account_id = t.account_id
                """, st), {"d": _day(st)}).rowcount
        conn.execute("DELETE FROM investment.daily_performance_rejects WHERE run_id = %s AND date = %s",
                     (st.run_id, _day(st)))
        conn.execute(_fill(
            """
            INSERT INTO investment.daily_performance_rejects (run_id, date, account_id, reason, item)
            SELECT %(run)s, %(d)s, account_id, reason, item FROM {rejects}
            """, st), {"run": st.run_id, "d": _day(st)})
        upserted = conn.execute(_fill(
            """
            INSERT INTO investment.daily_performance AS t (
                account_id, product_id, date, opening_balance, closing_balance, daily_return,
                daily_return_percentage, cumulative_return, cumulative_return_percentage,
                trades_executed, winning_trades, losing_trades, ml_agent_data)
            SELECT account_id, product_id, date, opening_balance, closing_balance, daily_return,
                   daily_return_percentage, cumulative_return, cumulative_return_percentage,
                   trades_executed, winning_trades, losing_trades, ml_agent_data
            FROM {ready}
            ON CONFLICT (account_id, date) DO UPDATE SET
                product_id = EXCLUDED.product_id,
                opening_balance = EXCLUDED.opening_balance,
                closing_balance = EXCLUDED.closing_balance,
                daily_return = EXCLUDED.daily_return,
                daily_return_percentage = EXCLUDED.daily_return_percentage,
                cumulative_return = EXCLUDED.cumulative_return,
                cumulative_return_percentage = EXCLUDED.cumulative_return_percentage,
                trades_executed = EXCLUDED.trades_executed,
                winning_trades = EXCLUDED.winning_trades,
                losing_trades = EXCLUDED.losing_trades,
                ml_agent_data = EXCLUDED.ml_agent_data
            WHERE (t.product_id, t.opening_balance, t.closing_balance, t.daily_return,
                   t.daily_return_percentage, t.cumulative_return, t.cumulative_return_percentage,
                   t.trades_executed, t.winning_trades, t.losing_trades, t.ml_agent_data)
              IS DISTINCT FROM
                  (EXCLUDED.product_id, EXCLUDED.opening_balance, EXCLUDED.closing_balance,
                   EXCLUDED.daily_return, EXCLUDED.daily_return_percentage, EXCLUDED.cumulative_return,
                   EXCLUDED.cumulative_return_percentage, EXCLUDED.trades_executed,
                   EXCLUDED.winning_trades, EXCLUDED.losing_trades, EXCLUDED.ml_agent_data)
            """, st)).rowcount
        # Days after D were chained from the old D (or from a gap): chain them again from D.
        later = conn.execute(_fill(
            """
            WITH seed AS (
                SELECT r.account_id, r.cumulative_return AS cum0, r.cumulative_return_percentage AS twr0
                FROM {ready} r
                WHERE r.account_id IN (SELECT account_id FROM investment.daily_performance
                                       WHERE date > %(d)s)
            ), chained AS (
                SELECT l.account_id, l.date,
                       s.cum0 + sum(l.daily_return) OVER w AS cumulative_return,
                       investment.twr_chain(s.twr0, l.daily_return_percentage) OVER w
                           AS cumulative_return_percentage
                FROM investment.daily_performance l JOIN seed s USING (account_id)
                WHERE l.date > %(d)s
                WINDOW w AS (PARTITION BY l.account_id ORDER BY l.date
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            )
            UPDATE investment.daily_performance t
            SET cumulative_return = c.cumulative_return,
                cumulative_return_percentage = c.cumulative_return_percentage
            FROM chained c
            WHERE t.account_id = c.account_id AND t.date = c.date
              AND (t.cumulative_return, t.cumulative_return_percentage)
                  IS DISTINCT FROM (c.cumulative_return, c.cumulative_return_percentage)
            """, st), {"d": _day(st)}).rowcount
        rejects = conn.execute(
            "SELECT count(*) FROM investment.daily_performance_rejects WHERE run_id = %s AND date = %s",
            (st.run_id, _day(st))).fetchone()[0]
        conn.execute("UPDATE investment.daily_chain_version SET version = version + 1")
    return {"upserted": upserted, "later_days_rechained": later, "rejected": int(rejects),
            "chained_again_after_a_concurrent_date": rechained_d}


def update_account_snapshots(conn: psycopg.Connection, st: Staging, timezone: str) -> dict[str, int]:
    """Bring accounts up to their newest stored day, and never back to an older one.

    current_balance changes only where D is the account's newest stored day (a backfill of an old
    day leaves a newer balance alone). It is D's closing balance net of the withdrawals (and their
    reversals) settled after D ended in ``timezone``: the engine's closing for D cannot know of a
    payout made the next morning, and a rerun of D after it must not give the money back. The
    engine's closing for D+1 includes it (it is notified), so the next day's run nets nothing.
    total_return_percentage always follows the newest stored day, whose chain a late day may have
    just changed: D's own chain too, so it is read from the stored row, never from staging (an
    earlier date persisted after this run's persist re-chains the stored D, not this run's copy).
    """
    with conn.transaction():
        # Same lock as persist: later days are read while no other date is being written.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('investment.daily_performance chain'))")
        # Days after D are a range on the date index: empty in the usual forward run.
        updated = conn.execute(_fill(
            """
            WITH later AS (
                SELECT DISTINCT ON (dp.account_id) dp.account_id, dp.cumulative_return_percentage
                FROM investment.daily_performance dp
                WHERE dp.date > %(d)s
                ORDER BY dp.account_id, dp.date DESC
            ), settled_after AS (
                SELECT t.account_id,
                       sum(CASE WHEN t.type = 'withdrawal' THEN t.amount ELSE -t.amount END) AS net_out
                FROM investment.transactions t
                WHERE t.type IN ('withdrawal', 'withdrawal_reversal')
                  AND t.processed_at >= ((%(d)s::date + 1)::timestamp AT TIME ZONE %(tz)s)
                  AND t.account_id IN (SELECT account_id FROM {ready})
                GROUP BY t.account_id
            ), target AS (
                SELECT r.account_id,
                       l.account_id IS NULL AS d_is_newest,
                       d.closing_balance - coalesce(s.net_out, 0) AS balance,
                       coalesce(l.cumulative_return_percentage, d.cumulative_return_percentage) AS twr
                FROM {ready} r
                JOIN investment.daily_performance d ON d.account_id = r.account_id AND d.date = %(d)s
                LEFT JOIN later l ON l.account_id = r.account_id
                LEFT JOIN settled_after s ON s.account_id = r.account_id
            )
            UPDATE investment.accounts a
            SET current_balance = CASE WHEN t.d_is_newest THEN greatest(t.balance, 0) ELSE a.current_balance END,
                total_return_percentage = t.twr
            FROM target t
            WHERE a.id = t.account_id
              AND (CASE WHEN t.d_is_newest THEN greatest(t.balance, 0) ELSE a.current_balance END, t.twr)
                  IS DISTINCT FROM (a.current_balance, a.total_return_percentage)
            """, st), {"d": _day(st), "tz": timezone}).rowcount
    return {"accounts_updated": updated}


def summarise(conn: psycopg.Connection, st: Staging, counts: dict[str, Any], tolerance: int
              ) -> dict[str, Any]:
    """The run's summary: processed, missing, rejected, totals. Raises past the reject tolerance."""
    missing = conn.execute(_fill(
        """
        SELECT s.account_id::text FROM {accounts} s
        WHERE NOT EXISTS (SELECT 1 FROM {items} i WHERE i.account_id = s.account_id)
          AND NOT EXISTS (SELECT 1 FROM {rejects} r WHERE r.account_id = s.account_id::text)
        ORDER BY 1
        """, st)).fetchall()
    rejects = conn.execute(
        """SELECT account_id, reason FROM investment.daily_performance_rejects
           WHERE run_id = %s AND date = %s ORDER BY account_id, id""", (st.run_id, _day(st))).fetchall()
    totals = conn.execute(_fill(
        """
        SELECT p.currency, count(*), sum(r.daily_return), sum(r.closing_balance)
        FROM {ready} r JOIN investment.products p ON p.id = r.product_id
        GROUP BY p.currency ORDER BY p.currency
        """, st)).fetchall()
    conn.rollback()
    summary: dict[str, Any] = {
        "job_name": "daily_performance",
        "business_date": st.key,
        "run_id": st.run_id,
        "active_accounts": counts.get("active_accounts"),
        "received": counts.get("received"),
        "processed": counts.get("ready"),
        "rows_changed": counts.get("upserted"),
        "later_days_rechained": counts.get("later_days_rechained"),
        "accounts_updated": counts.get("accounts_updated"),
        "missing_count": len(missing),
        "missing_account_ids": [m[0] for m in missing[:SUMMARY_ID_LIMIT]],
        "rejected_count": len(rejects),
        "error_count": len(rejects),
        "rejected": [{"account_id": a, "reason": r} for a, r in rejects[:SUMMARY_ID_LIMIT]],
        "reject_tolerance": tolerance,
        "totals_by_currency": {
            cur: {"accounts": n, "daily_return": str(ret), "closing_balance": str(bal)}
            for cur, n, ret, bal in totals
        },
    }
    return summary


def check_tolerance(summary: dict[str, Any]) -> None:
    if summary["rejected_count"] > summary["reject_tolerance"]:
        listed = "; ".join(f"{r['account_id'] or '(no id)'}: {r['reason']}" for r in summary["rejected"][:20])
        more = summary["rejected_count"] - min(20, summary["rejected_count"])
        raise RejectsOverTolerance(
            f"{summary['rejected_count']} engine item(s) rejected for {summary['business_date']} "
            f"(tolerance {summary['reject_tolerance']}); good items were stored. Rejected: {listed}"
            + (f"; and {more} more in investment.daily_performance_rejects" if more else "")
            + ". Fix the engine's data, then rerun this date."
        )


def drop_staging(conn: psycopg.Connection, st: Staging) -> None:
    st.drop(conn, ROLES)
