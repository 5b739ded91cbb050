"""The summary tables of the fund view, rewritten inside the jobs' own transactions.

Each refresh recomputes the summary rows of what the transaction touched (a business date, a
period, the dates of some withdrawals) from the rows they summarise, so whatever order runs and
reruns come in, a summary equals a recomputation from the raw rows. None of them is incremental
arithmetic that a retry could apply twice. All three are set-based SQL over indexed slices.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

# Buckets of the accounts' daily returns, in percent: width_bucket's edges (bucket 0 is below the
# first edge, bucket len(edges) at or above the last).
RETURN_BUCKET_EDGES = ("-5", "-2", "-1", "-0.5", "0", "0.5", "1", "2", "5")
RANKED = 5  # best and worst accounts kept per product and date
EDGES = ", ".join(RETURN_BUCKET_EDGES)
ITEM = ("jsonb_build_object('account_id', account_id, 'daily_return_percentage', pct::text, "
        "'daily_return', daily_return::text)")

BOOK_DAY = f"""
    WITH day AS MATERIALIZED (
        SELECT date, account_id, product_id, opening_balance, closing_balance, daily_return, daily_return_percentage,
               trades_executed, winning_trades, losing_trades
        FROM investment.daily_performance WHERE date = %(day)s
    ), per_bucket AS (  -- one pass: the sums and the histogram together
        SELECT product_id, date, width_bucket(daily_return_percentage, ARRAY[{EDGES}]::numeric[]) AS bucket,
               count(*) AS accounts, sum(opening_balance) AS opening_balance, sum(closing_balance) AS closing_balance,
               sum(daily_return) AS daily_return, sum(trades_executed) AS trades_executed,
               sum(winning_trades) AS winning_trades, sum(losing_trades) AS losing_trades
        FROM day GROUP BY 1, 2, 3
    ), totals AS (
        SELECT product_id, date, sum(accounts)::integer AS accounts, sum(opening_balance) AS opening_balance,
               sum(closing_balance) AS closing_balance, sum(daily_return) AS daily_return,
               sum(trades_executed) AS trades_executed, sum(winning_trades) AS winning_trades,
               sum(losing_trades) AS losing_trades,
               jsonb_object_agg(bucket, accounts ORDER BY bucket) AS return_buckets
        FROM per_bucket GROUP BY 1, 2
    ), extremes AS (  -- per product, a top-N heapsort of the day each way (a full sort of the day cost more)
        SELECT t.product_id, t.date,
               (SELECT jsonb_agg({ITEM} ORDER BY pct DESC, account_id)
                FROM (SELECT account_id, daily_return_percentage AS pct, daily_return FROM day
                      WHERE day.product_id = t.product_id
                      ORDER BY daily_return_percentage DESC, account_id LIMIT {RANKED}) top) AS best,
               (SELECT jsonb_agg({ITEM} ORDER BY pct, account_id)
                FROM (SELECT account_id, daily_return_percentage AS pct, daily_return FROM day
                      WHERE day.product_id = t.product_id
                      ORDER BY daily_return_percentage, account_id LIMIT {RANKED}) bottom) AS worst
        FROM totals t
    )
    INSERT INTO investment.book_daily (product_id, date, currency, accounts, opening_balance, closing_balance,
        daily_return, trades_executed, winning_trades, losing_trades, return_buckets, best, worst)
    SELECT t.product_id, t.date, p.currency, t.accounts, t.opening_balance, t.closing_balance, t.daily_return,
           t.trades_executed, t.winning_trades, t.losing_trades, t.return_buckets, e.best, e.worst
    FROM totals t JOIN investment.products p ON p.id = t.product_id JOIN extremes e USING (product_id, date)
"""  # noqa: S608 - constants of this module


def _lock(conn: psycopg.Connection, name: str) -> None:
    """One writer per summary slice until the transaction ends: a concurrent refresh of the same
    slice waits, then deletes what this one wrote, instead of colliding on its primary key."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))


def refresh_book_day(conn: psycopg.Connection, day: date) -> int:
    """Rewrite D's ``book_daily`` rows from D's stored days (inside the caller's transaction)."""
    return refresh_book_days(conn, [day])


def refresh_book_days(conn: psycopg.Connection, days: list[date]) -> int:
    """One date at a time: each statement reads one date's rows (a top-N per product over them)."""
    written = 0
    for day in sorted(days):
        _lock(conn, f"book_daily:{day.isoformat()}")
        conn.execute("DELETE FROM investment.book_daily WHERE date = %s", (day,))
        written += conn.execute(BOOK_DAY, {"day": day}).rowcount
    return written


PERIOD = """
    INSERT INTO investment.distribution_monthly (product_id, period, currency, accounts, distributed_accounts,
        no_profit_accounts, gross_profit, performance_fee_amount, net_profit, below_high_water_mark)
    SELECT d.product_id, d.period, p.currency, count(*), count(*) FILTER (WHERE d.status = 'distributed'),
           count(*) FILTER (WHERE d.status = 'no_profit'),
           sum(coalesce(c.gross_profit, d.gross_profit)), sum(coalesce(c.performance_fee_amount,
                                                                     d.performance_fee_amount)),
           sum(coalesce(c.net_profit, d.net_profit)),
           count(*) FILTER (WHERE d.fee_model = 'high_water_mark' AND d.cumulative_return < d.high_water_mark_after)
    FROM investment.distributions d
    JOIN investment.products p ON p.id = d.product_id
    LEFT JOIN LATERAL (SELECT dc.gross_profit, dc.performance_fee_amount, dc.net_profit
                       FROM investment.distribution_corrections dc WHERE dc.distribution_id = d.id
                       ORDER BY dc.id DESC LIMIT 1) c ON true
    WHERE d.period = ANY(%(periods)s)
    GROUP BY d.product_id, d.period, p.currency
"""


def refresh_period(conn: psycopg.Connection, period: str) -> int:
    """Rewrite P's ``distribution_monthly`` rows from its distributions and their corrections."""
    return refresh_periods(conn, [period])


def refresh_periods(conn: psycopg.Connection, periods: list[str]) -> int:
    for period in sorted(periods):
        _lock(conn, f"distribution_monthly:{period}")
    conn.execute("DELETE FROM investment.distribution_monthly WHERE period = ANY(%s)", (list(periods),))
    return conn.execute(PERIOD, {"periods": list(periods)}).rowcount


# A request's currency is its product's: ``withdrawal_requests.currency`` is set only when a request
# is claimed (migration 0004), so a request completed before it, or written by another system, has none.
PAYOUT_DAY = """
    WITH bounds AS (
        SELECT (%(day)s::date)::timestamp AT TIME ZONE %(tz)s AS start_at,
               (%(day)s::date + 1)::timestamp AT TIME ZONE %(tz)s AS end_at
    ), movements AS (
        SELECT t.withdrawal_request_id AS request_id, t.type AS kind, t.amount
        FROM bounds, investment.transactions t
        WHERE t.type IN ('withdrawal', 'withdrawal_reversal') AND t.withdrawal_request_id IS NOT NULL
          AND t.processed_at >= bounds.start_at AND t.processed_at < bounds.end_at
        UNION ALL
        SELECT w.id, 'failed', w.amount
        FROM bounds, investment.withdrawal_requests w
        WHERE w.status = 'failed' AND w.transaction_id IS NULL
          AND w.processed_at >= bounds.start_at AND w.processed_at < bounds.end_at
        UNION ALL
        SELECT w.id, 'in_flight', w.amount
        FROM bounds, investment.withdrawal_requests w
        WHERE w.status = 'processing' AND w.claimed_at >= bounds.start_at AND w.claimed_at < bounds.end_at
    ), priced AS (
        SELECT coalesce(w.currency, p.currency) AS currency, m.kind, m.amount
        FROM movements m
        JOIN investment.withdrawal_requests w ON w.id = m.request_id
        JOIN investment.accounts a ON a.id = w.account_id
        JOIN investment.products p ON p.id = a.product_id
    )
    INSERT INTO investment.payouts_daily (date, currency, paid_count, paid_amount, reversed_count, reversed_amount,
        failed_count, failed_amount, in_flight_count, in_flight_amount)
    SELECT %(day)s, currency,
           count(*) FILTER (WHERE kind = 'withdrawal'), coalesce(sum(amount) FILTER (WHERE kind = 'withdrawal'), 0),
           count(*) FILTER (WHERE kind = 'withdrawal_reversal'),
           coalesce(sum(amount) FILTER (WHERE kind = 'withdrawal_reversal'), 0),
           count(*) FILTER (WHERE kind = 'failed'), coalesce(sum(amount) FILTER (WHERE kind = 'failed'), 0),
           count(*) FILTER (WHERE kind = 'in_flight'), coalesce(sum(amount) FILTER (WHERE kind = 'in_flight'), 0)
    FROM priced GROUP BY currency
"""

DAYS_OF_REQUESTS = """
    SELECT DISTINCT day FROM (
        SELECT (claimed_at AT TIME ZONE %(tz)s)::date AS day FROM investment.withdrawal_requests
        WHERE id = ANY(%(ids)s::uuid[]) AND claimed_at IS NOT NULL
        UNION ALL
        SELECT (processed_at AT TIME ZONE %(tz)s)::date FROM investment.withdrawal_requests
        WHERE id = ANY(%(ids)s::uuid[]) AND processed_at IS NOT NULL
        UNION ALL
        SELECT (processed_at AT TIME ZONE %(tz)s)::date FROM investment.transactions
        WHERE withdrawal_request_id = ANY(%(ids)s::uuid[]) AND type IN ('withdrawal', 'withdrawal_reversal')
    ) d
"""


def refresh_payout_days(conn: psycopg.Connection, days: set[date], tz: str) -> None:
    """Rewrite ``payouts_daily`` for ``days`` (business dates in ``tz``)."""
    for day in sorted(days):  # sorted: two transactions take the dates' locks in one order
        _lock(conn, f"payouts_daily:{day.isoformat()}")
        conn.execute("DELETE FROM investment.payouts_daily WHERE date = %s", (day,))
        conn.execute(PAYOUT_DAY, {"day": day, "tz": tz})


def refresh_payouts_of(conn: psycopg.Connection, request_ids: list[str], tz: str | None = None) -> None:
    """Rewrite ``payouts_daily`` for every date these requests' claims, outcomes and ledger rows fall
    on (inside the transaction that just changed them)."""
    if not request_ids:
        return
    if tz is None:
        from investment_jobs.config import cron_timezone

        tz = cron_timezone()
    days = {row[0] for row in conn.execute(DAYS_OF_REQUESTS, {"ids": list(request_ids), "tz": tz}).fetchall()}
    refresh_payout_days(conn, days, tz)


def rebuild_all(conn: psycopg.Connection, tz: str) -> None:
    """Every summary row from the raw rows (a migration's backfill; the equality tests' reference)."""
    days = [r[0] for r in conn.execute("SELECT DISTINCT date FROM investment.daily_performance").fetchall()]
    periods = [r[0] for r in conn.execute("SELECT DISTINCT period FROM investment.distributions").fetchall()]
    refresh_book_days(conn, days)
    refresh_periods(conn, periods)
    ids = [r[0] for r in conn.execute(
        "SELECT id::text FROM investment.withdrawal_requests WHERE claimed_at IS NOT NULL OR processed_at IS NOT NULL"
    ).fetchall()]
    conn.execute("DELETE FROM investment.payouts_daily")
    refresh_payouts_of(conn, ids, tz)


RUN_QUALITY = """
    INSERT INTO investment.run_quality (job, subject, run_id, active_accounts, stored, missing, rejected,
                                        rejected_by_reason, held_back, held_back_by_reason)
    VALUES (%(job)s, %(subject)s, %(run_id)s, %(active)s, %(stored)s, %(missing)s, %(rejected)s,
            %(rejected_by_reason)s, %(held_back)s, %(held_back_by_reason)s)
    ON CONFLICT (job, subject) DO UPDATE SET
        run_id = excluded.run_id, active_accounts = excluded.active_accounts, stored = excluded.stored,
        missing = excluded.missing, rejected = excluded.rejected, rejected_by_reason = excluded.rejected_by_reason,
        held_back = excluded.held_back, held_back_by_reason = excluded.held_back_by_reason, updated_at = now()
"""


def record_run_quality(conn: psycopg.Connection, job: str, subject: str, run_id: str, *,
                       active: int | None = None, stored: int | None = None, missing: int = 0,
                       rejected_by_reason: dict[str, int] | None = None,
                       held_back_by_reason: dict[str, int] | None = None) -> None:
    """What the last run of a date or period found (its own transaction: a run's facts, not rows)."""
    import json

    rejected_by_reason = rejected_by_reason or {}
    held_back_by_reason = held_back_by_reason or {}
    with conn.transaction():
        conn.execute(RUN_QUALITY, {
            "job": job, "subject": subject, "run_id": run_id, "active": active, "stored": stored, "missing": missing,
            "rejected": sum(rejected_by_reason.values()), "rejected_by_reason": json.dumps(rejected_by_reason),
            "held_back": sum(held_back_by_reason.values()), "held_back_by_reason": json.dumps(held_back_by_reason)})
