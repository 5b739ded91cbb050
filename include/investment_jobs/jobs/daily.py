"""daily_performance: record every active account's performance for ONE business date D.

Steps (each one DAG task, each one database transaction, each safe to retry):

1. ``snapshot_active_accounts``  accounts active on D (contracts.md) into a staging table.
2. ``pull_performance``          page the engine's bulk listing for D; validate each item in
                                 Decimal; COPY good items and rejects into staging tables.
3. ``store_day``                 under a lock shared by all dates, in one transaction: reject
                                 unknown/inactive/duplicate accounts (set-based); chain D from
                                 the stored day before it; upsert D's rows and this run's rejects;
                                 chain the stored days after D again; then the accounts:
                                 current_balance only where D is the newest stored day (net of
                                 withdrawals settled after D), total_return_percentage from the
                                 newest stored day.
4. ``summarise``                 one JSON line; fail when rejects exceed the tolerance.
5. ``drop_staging``              teardown.

Cumulative fields (the order-independent definition): for each stored row,
``cumulative_return`` = Σ daily_return of the account's stored rows up to and including it, and
``cumulative_return_percentage`` = the time-weighted chain of daily_return_percentage over the
same rows, rounded to 10 decimals half-even at each step (``investment.twr_step``).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from psycopg import sql

from investment_jobs.bulk import cyclic_gc_paused
from investment_jobs.business_dates import Period
from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.db.staging import RunReference, Staging
from investment_jobs.ml_engine.client import page_limit
from investment_jobs.ml_engine.shards import AccountRange
from investment_jobs.ml_engine.validation import DailyItem, Rejected, as_sent, validate_item
from investment_jobs.money import dumps_lenient
from investment_jobs.views.summaries import record_run_quality, refresh_book_day

if TYPE_CHECKING:
    import psycopg

    from investment_jobs.ml_engine.client import MLEngineClient

JOB = "dp"
ROLES = ("accounts", "items", "rejects", "ready")
CHAIN_LOCK = "SELECT pg_advisory_xact_lock(hashtext('investment.daily_performance chain'))"
WHOLE_LISTING = AccountRange()  # one shard: the listing as contracts.md has it


class RejectsOverTolerance(Exception):
    """More items were rejected than DAILY_REJECT_TOLERANCE allows."""


def reference_for(business_date: date, run_id: str) -> RunReference:
    return RunReference(JOB, run_id, business_date=business_date)


def staging(run: RunReference) -> Staging:
    return Staging(run, ROLES)


# --- the statements, in the order the steps run them ------------------------------------------
CREATE_ACCOUNTS = """
    CREATE UNLOGGED TABLE {accounts} AS
    SELECT a.id AS account_id, a.product_id
    FROM investment.accounts a
    WHERE (a.opened_at AT TIME ZONE %(tz)s)::date <= %(d)s
      AND a.status <> 'suspended'
      AND (a.closed_at IS NULL OR (a.closed_at AT TIME ZONE %(tz)s)::date > %(d)s)
"""
ACCOUNTS_KEY = "ALTER TABLE {accounts} ADD PRIMARY KEY (account_id)"
# One partition per shard (an account range, SHARDS): each mapped pull writes, and on a retry
# empties, only its own; the later steps read them all through the parent.
CREATE_ITEMS = """
    CREATE TABLE {items} (
        account_id uuid NOT NULL,
        opening_balance numeric(20, 8) NOT NULL, closing_balance numeric(20, 8) NOT NULL,
        daily_return numeric(20, 8) NOT NULL, daily_return_percentage numeric(20, 10) NOT NULL,
        trades_executed integer NOT NULL, winning_trades integer NOT NULL,
        losing_trades integer NOT NULL, ml_agent_data jsonb, shard smallint NOT NULL) PARTITION BY LIST (shard)
"""
CREATE_SHARD_ITEMS = "CREATE UNLOGGED TABLE {part} PARTITION OF {items} (shard DEFAULT {shard}) FOR VALUES IN ({shard})"
# stage: 'parse' (the item itself is bad: its shard's) or 'match' (the book cannot take it)
CREATE_REJECTS = """
    CREATE UNLOGGED TABLE {rejects} (account_id text NOT NULL, reason text NOT NULL, item jsonb,
                                     stage text NOT NULL DEFAULT 'parse', shard smallint)
"""
EMPTY_SHARD = "TRUNCATE {part}"
FORGET_SHARD_REJECTS = "DELETE FROM {rejects} WHERE stage = 'parse' AND shard = %(shard)s"
COPY_ITEMS = """COPY {part} (account_id, opening_balance, closing_balance, daily_return, daily_return_percentage,
                             trades_executed, winning_trades, losing_trades, ml_agent_data) FROM STDIN"""
COPY_REJECTS = "COPY {rejects} (account_id, reason, item, shard) FROM STDIN"
ANALYZE_ITEMS = "ANALYZE {items} (account_id)"  # the joins' column (and the row count): not the jsonb
# 3,000 sampled rows instead of 30,000: the joins need the row count and that account_id is unique
# (a sample with no repeat says so), not its histogram. Half the ANALYZE at 100k accounts.
ITEMS_SAMPLE = "ALTER TABLE {items} ALTER COLUMN account_id SET STATISTICS 10"

DROP_READY = "DROP TABLE IF EXISTS {ready}"
FORGET_MATCH_REJECTS = "DELETE FROM {rejects} WHERE stage = 'match'"  # a retry starts afresh
REJECT_WHAT_THE_BOOK_CANNOT_TAKE = """
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
           to_jsonb(i) - 'shard',
           'match'
    FROM {items} i
    LEFT JOIN (SELECT account_id, count(*) AS n FROM {items} GROUP BY 1 HAVING count(*) > 1) d
           USING (account_id)
    LEFT JOIN {accounts} s USING (account_id)
    LEFT JOIN investment.accounts a ON a.id = i.account_id
    WHERE d.n IS NOT NULL OR s.account_id IS NULL
"""
# ``p``: the stored day before D of the row ``x``, what D's cumulative fields chain from. Usually it
# is D - 1, one date's rows in one hash join; only an account without a row on D - 1 (a gap, or its
# first day) looks further back, by its key (the lateral's one-time filter skips it for the rest).
# D's chain step is investment.twr_step's own formula, its product computed once per row (the
# OFFSET 0 keeps the planner from folding it back in): inlined, twr_step evaluates its argument
# four times over, a fifth of this statement at 100k accounts.
CREATE_READY = """
    CREATE UNLOGGED TABLE {ready} AS
    SELECT x.account_id, s.product_id, %(d)s::date AS date,
           x.opening_balance, x.closing_balance, x.daily_return, x.daily_return_percentage,
           coalesce(p.cumulative_return, 0) + x.daily_return AS cumulative_return,
           investment.round_half_even_10(step.unrounded) AS cumulative_return_percentage,
           x.trades_executed, x.winning_trades, x.losing_trades, x.ml_agent_data
    FROM {items} x
    JOIN {accounts} s USING (account_id)
    LEFT JOIN investment.daily_performance y ON y.account_id = x.account_id AND y.date = %(d)s::date - 1
    LEFT JOIN LATERAL (
        SELECT dp.cumulative_return, dp.cumulative_return_percentage
        FROM investment.daily_performance dp
        WHERE y.account_id IS NULL AND dp.account_id = x.account_id AND dp.date < %(d)s
        ORDER BY dp.date DESC LIMIT 1
    ) older ON true
    CROSS JOIN LATERAL (
        SELECT coalesce(y.cumulative_return, older.cumulative_return) AS cumulative_return,
               coalesce(y.cumulative_return_percentage, older.cumulative_return_percentage)
                   AS cumulative_return_percentage
    ) p
    CROSS JOIN LATERAL (
        SELECT (100 + coalesce(p.cumulative_return_percentage, 0)) * (100 + x.daily_return_percentage) * 0.01 - 100
               AS unrounded
        OFFSET 0
    ) step
    WHERE NOT EXISTS (SELECT 1 FROM {rejects} r
                      WHERE r.stage = 'match' AND r.account_id = x.account_id::text)
"""
FORGET_STORED_REJECTS = "DELETE FROM investment.daily_performance_rejects WHERE run_id = %(run)s AND date = %(d)s"
STORE_REJECTS = """
    INSERT INTO investment.daily_performance_rejects (run_id, date, account_id, reason, item)
    SELECT %(run)s, %(d)s, account_id, reason, item FROM {rejects}
"""
INSERT_DAY = """
    INSERT INTO investment.daily_performance AS t (
        account_id, product_id, date, opening_balance, closing_balance, daily_return,
        daily_return_percentage, cumulative_return, cumulative_return_percentage,
        trades_executed, winning_trades, losing_trades, ml_agent_data)
    SELECT account_id, product_id, date, opening_balance, closing_balance, daily_return,
           daily_return_percentage, cumulative_return, cumulative_return_percentage,
           trades_executed, winning_trades, losing_trades, ml_agent_data
    FROM {ready}
"""
# Only store_day writes daily rows, under CHAIN_LOCK: while it is held, a date with no stored row
# gets none from anyone else, and a plain INSERT stores it (the usual forward run: 20-25 % of the
# upsert's time is its conflict handling). A rerun of a stored date takes the upsert.
D_IS_STORED = "SELECT EXISTS (SELECT 1 FROM investment.daily_performance WHERE date = %(d)s)"
UPSERT_DAY = INSERT_DAY + """
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
"""
# Days after D were chained from the old D (or from a gap): chain them again from D.
CHAIN_LATER_DAYS_AGAIN = """
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
"""
COUNT_STORED_REJECTS = """
    SELECT count(*) FROM investment.daily_performance_rejects WHERE run_id = %(run)s AND date = %(d)s
"""
ENSURE_PARTITION = "SELECT investment.ensure_daily_partition(%(d)s)"  # D's month (migration 0012)

# Days after D are a range on the date index: empty in the usual forward run. D's rows are read from
# the staged copy, which is what store_day stored (it writes one and reads the other under one lock).
UPDATE_ACCOUNTS = """
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
               r.closing_balance - coalesce(s.net_out, 0) AS balance,
               coalesce(l.cumulative_return_percentage, r.cumulative_return_percentage) AS twr
        FROM {ready} r
        LEFT JOIN later l ON l.account_id = r.account_id
        LEFT JOIN settled_after s ON s.account_id = r.account_id
    )
    UPDATE investment.accounts a
    SET current_balance = CASE WHEN t.d_is_newest THEN greatest(t.balance, 0) ELSE a.current_balance END,
        total_return_percentage = t.twr,
        updated_at = now()  -- stamped here: the row trigger is skipped (migration 0013)
    FROM target t
    WHERE a.id = t.account_id
      AND (CASE WHEN t.d_is_newest THEN greatest(t.balance, 0) ELSE a.current_balance END, t.twr)
          IS DISTINCT FROM (a.current_balance, a.total_return_percentage)
"""

MISSING_ACCOUNTS = """
    SELECT s.account_id::text FROM {accounts} s
    WHERE NOT EXISTS (SELECT 1 FROM {items} i WHERE i.account_id = s.account_id)
      AND NOT EXISTS (SELECT 1 FROM {rejects} r WHERE r.account_id = s.account_id::text)
    ORDER BY 1
"""
STORED_REJECTS = """
    SELECT account_id, reason FROM investment.daily_performance_rejects
    WHERE run_id = %(run)s AND date = %(d)s ORDER BY account_id, id
"""
# Accounts of this run whose month was distributed and whose stored days no longer add up to it
# (the monthly job's drift rule, for the accounts D changed): a restated day after the month paid.
DRIFTED_DISTRIBUTIONS = """
    SELECT d.account_id::text
    FROM investment.distributions d
    JOIN {ready} r ON r.account_id = d.account_id
    CROSS JOIN LATERAL (
        SELECT sum(dp.daily_return) AS gross_profit,
               (array_agg(dp.opening_balance ORDER BY dp.date))[1] AS opening_balance,
               (array_agg(dp.closing_balance ORDER BY dp.date DESC))[1] AS closing_balance
        FROM investment.daily_performance dp
        WHERE dp.account_id = d.account_id AND dp.date BETWEEN %(start)s AND %(end)s) s
    LEFT JOIN LATERAL (SELECT * FROM investment.distribution_corrections dc WHERE dc.distribution_id = d.id
                       ORDER BY dc.id DESC LIMIT 1) c ON true  -- a correction's figures are the month's now
    WHERE d.period = %(period)s
      AND (coalesce(c.gross_profit, d.gross_profit), coalesce(c.opening_balance, d.opening_balance),
           coalesce(c.closing_balance, d.closing_balance))
          IS DISTINCT FROM (s.gross_profit, s.opening_balance, s.closing_balance)
    ORDER BY 1
"""
TOTALS_BY_CURRENCY = """
    SELECT p.currency, count(*), sum(r.daily_return), sum(r.closing_balance)
    FROM {ready} r JOIN investment.products p ON p.id = r.product_id
    GROUP BY p.currency ORDER BY p.currency
"""


def _params(run: RunReference, **more: Any) -> dict[str, Any]:
    return {"d": run.business_date, "run": run.run_id, **more}


# --- 1. snapshot -------------------------------------------------------------------------------
def snapshot_active_accounts(conn: psycopg.Connection, run: RunReference, timezone: str, shards: int = 1) -> int:
    """Create the run's staging tables (``shards`` partitions of items) and fill the set of accounts
    active on D (refused for a month whose daily rows data_cleanup archived:
    :class:`~investment_jobs.jobs.daily_months.MonthArchived`)."""
    from investment_jobs.jobs.daily_months import refuse_if_archived

    refuse_if_archived(conn, Period.of(run.business_date))
    AccountRange(0, shards)  # a bad count fails here, before any table
    tables = staging(run)
    tables.recreate(conn, CREATE_ACCOUNTS, ACCOUNTS_KEY, CREATE_ITEMS, ITEMS_SAMPLE, CREATE_REJECTS,
                    params=_params(run, tz=timezone))
    with conn.transaction():
        for shard in range(shards):
            tables.execute(conn, CREATE_SHARD_ITEMS, part=tables.part("items", shard), shard=sql.Literal(shard))
    count = tables.count(conn, "accounts")
    conn.rollback()
    return count


# --- 2. pull -----------------------------------------------------------------------------------
def pull_performance(conn: psycopg.Connection, client: MLEngineClient, run: RunReference, page_size: int,
                     max_pages: int | None = None, shard: AccountRange = WHOLE_LISTING) -> dict[str, int]:
    """Page D's bulk listing (of ``shard``'s account range) into staging; one page in memory at a
    time; all or nothing for the shard (a retry empties only its own partition and rejects).

    ``max_pages`` bounds the listing (an engine whose cursor never ends fails the run instead of
    filling staging forever); by default it is what D's active accounts can need (see
    :func:`~investment_jobs.ml_engine.client.page_limit`). An item the database refuses despite
    validation becomes a reject with the database's reason, never a failed day. An item of another
    shard's range (an engine that ignores the range) is left to that shard: counted, not kept.
    """
    tables = staging(run)
    part = tables.part("items", shard.index)
    day = run.business_date
    received = valid = rejected = pages = elsewhere = 0
    whole = shard.count == 1
    with conn.transaction(), cyclic_gc_paused():
        if max_pages is None:
            max_pages = page_limit(tables.count(conn, "accounts"), page_size)
        tables.execute(conn, EMPTY_SHARD, part=part)
        tables.execute(conn, FORGET_SHARD_REJECTS, {"shard": shard.index})
        cur = conn.cursor()
        for page in client.iter_daily_performance(day, page_size, max_pages=max_pages, extra=shard.query()):
            pages += 1
            good: list[tuple[DailyItem, Any]] = []
            bad: list[tuple[Rejected, Any]] = []
            for raw in page:
                outcome = validate_item(raw, day)
                if not whole and not shard.holds(outcome.account_id):
                    elsewhere += 1
                elif isinstance(outcome, DailyItem):
                    good.append((outcome, raw))
                else:
                    bad.append((outcome, raw))
            received += len(page)
            refused = _copy_items(conn, cur, tables.sql(COPY_ITEMS, part=part), good)
            bad.extend(refused)
            valid += len(good) - len(refused)
            rejected += len(bad)
            if bad:
                with cur.copy(tables.sql(COPY_REJECTS)) as copy:
                    for reject, raw in bad:
                        copy.write_row((reject.account_id, reject.reason, dumps_lenient(as_sent(raw)), shard.index))
    return {"pages": pages, "received": received - elsewhere, "valid": valid, "rejected": rejected,
            "other_shards_items": elsewhere}


def add_pulled(shards: list[dict[str, int]]) -> dict[str, int]:
    """The shards' pull counts, added up (what summarise reports for the whole date)."""
    total: dict[str, int] = {}
    for counts in shards:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


def _copy_items(conn: psycopg.Connection, cur: psycopg.Cursor, statement: sql.Composed,
                items: list[tuple[DailyItem, Any]]) -> list[tuple[Rejected, Any]]:
    """COPY a page of valid items into staging in a savepoint. Should the database still refuse one
    (a case validation missed), the page is written again item by item and each refused item comes
    back as a reject with the database's reason: one odd item never fails the day."""
    import psycopg

    refusals = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded, UnicodeEncodeError)
    try:
        with conn.transaction(), cur.copy(statement) as copy:
            for item, _ in items:
                copy.write_row(item)
        return []
    except refusals:
        pass
    refused: list[tuple[Rejected, Any]] = []
    for item, raw in items:
        try:
            with conn.transaction(), cur.copy(statement) as copy:
                copy.write_row(item)
        except refusals as exc:
            message = getattr(getattr(exc, "diag", None), "message_primary", None) or type(exc).__name__
            refused.append((Rejected(item.account_id, f"the database refused the item: {message[:300]}"), raw))
    return refused


# --- 3. store -----------------------------------------------------------------------------------
def store_day(conn: psycopg.Connection, run: RunReference, timezone: str) -> dict[str, int]:
    """Match, chain and write D, then bring the accounts up to it: one transaction, under the lock
    every date's writer holds (CHAIN_LOCK).

    Items the book cannot take become rejects; the rest are chained from the stored day before D,
    upserted with this run's rejects, and the stored days after D are chained again from D. The
    accounts follow in the same transaction. Because no other date is written between the chain and
    the accounts (several dates at once in a backfill wait on the lock, one after another), any
    interleaving of dates ends with the rows of a sequential run, and an operator never sees D's rows
    stored with the accounts not yet moved to them.

    Accounts move to their newest stored day, never back to an older one: current_balance changes
    only where D is the newest (a backfill of an old day leaves a newer balance alone), to D's
    closing balance net of the withdrawals (and their reversals) settled after D ended in
    ``timezone``: the engine's closing for D cannot know of a payout made the next morning, and a
    rerun of D after it must not give the money back; the engine's closing for D+1 includes it, so
    the next day nets nothing. total_return_percentage follows the newest stored day, whose chain
    D may just have changed.
    """
    tables = staging(run)
    params = _params(run, tz=timezone)
    with conn.transaction():
        conn.execute(CHAIN_LOCK)
        tables.execute(conn, ANALYZE_ITEMS)  # every shard's items are in
        tables.execute(conn, DROP_READY)
        tables.execute(conn, FORGET_MATCH_REJECTS)
        tables.execute(conn, REJECT_WHAT_THE_BOOK_CANNOT_TAKE, params)
        tables.execute(conn, CREATE_READY, params)
        ready = tables.count(conn, "ready")
        conn.execute(FORGET_STORED_REJECTS, params)
        tables.execute(conn, STORE_REJECTS, params)
        conn.execute(ENSURE_PARTITION, params)
        stored_before = conn.execute(D_IS_STORED, params).fetchone()[0]
        upserted = tables.execute(conn, UPSERT_DAY if stored_before else INSERT_DAY).rowcount
        later = tables.execute(conn, CHAIN_LATER_DAYS_AGAIN, params).rowcount
        rejects = conn.execute(COUNT_STORED_REJECTS, params).fetchone()[0]
        refresh_book_day(conn, run.business_date)  # the fund view's sums of D, in D's transaction
        updated = tables.execute(conn, UPDATE_ACCOUNTS, params).rowcount
    return {"ready": ready, "upserted": upserted, "later_days_rechained": later, "rejected": int(rejects),
            "accounts_updated": updated}


# --- 6. summary --------------------------------------------------------------------------------
def summarise(conn: psycopg.Connection, run: RunReference, counts: dict[str, Any], tolerance: int
              ) -> dict[str, Any]:
    """The run's summary: processed, missing, rejected, totals."""
    tables = staging(run)
    missing = tables.execute(conn, MISSING_ACCOUNTS).fetchall()
    rejects = conn.execute(STORED_REJECTS, _params(run)).fetchall()
    totals = tables.execute(conn, TOTALS_BY_CURRENCY).fetchall()
    period = Period.of(run.business_date)
    drifted = [r[0] for r in tables.execute(conn, DRIFTED_DISTRIBUTIONS, {
        "period": period.key, "start": period.first_day, "end": period.last_day}).fetchall()]
    conn.rollback()
    by_reason: dict[str, int] = {}
    for _, reason in rejects:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    record_run_quality(conn, "daily_performance", run.key, run.run_id, active=counts.get("active_accounts"),
                       stored=counts.get("ready"), missing=len(missing), rejected_by_reason=by_reason)
    return {
        "job_name": "daily_performance",
        "business_date": run.key,
        "run_id": run.run_id,
        "active_accounts": counts.get("active_accounts"),
        "received": counts.get("received"),
        # sent to a shard for another's account range (an engine that ignores SHARDS' ranges): 0
        "items_outside_their_shard": counts.get("other_shards_items", 0),
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
        "distribution_drift": {"period": period.key, "count": len(drifted),
                               "account_ids": drifted[:SUMMARY_ID_LIMIT]},
        "totals_by_currency": {
            cur: {"accounts": n, "daily_return": str(ret), "closing_balance": str(bal)}
            for cur, n, ret, bal in totals
        },
    }


def check_tolerance(summary: dict[str, Any]) -> None:
    """Raise past the reject tolerance, in words an operator can act on."""
    if summary["rejected_count"] > summary["reject_tolerance"]:
        listed = "; ".join(f"{r['account_id'] or '(no id)'}: {r['reason']}" for r in summary["rejected"][:20])
        more = summary["rejected_count"] - min(20, summary["rejected_count"])
        raise RejectsOverTolerance(
            f"{summary['rejected_count']} engine item(s) rejected for {summary['business_date']} "
            f"(tolerance {summary['reject_tolerance']}); good items were stored. Rejected: {listed}"
            + (f"; and {more} more in investment.daily_performance_rejects" if more else "")
            + ". Fix the engine's data, then rerun this date."
        )


def record_partition(conn: psycopg.Connection, run: RunReference) -> None:
    """The run succeeded: its partition is stored (investment.stored_partitions, beside the asset event)."""
    from investment_jobs.jobs.partitions import DAILY, record_stored

    record_stored(conn, DAILY, run.key, run.run_id)


def drop_staging(conn: psycopg.Connection, run: RunReference) -> None:
    staging(run).drop(conn)
