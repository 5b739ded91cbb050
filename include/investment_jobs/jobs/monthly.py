"""monthly_distribution: distribute ONE calendar month's profit and charge the performance fee.

Steps (each one DAG task, each one database transaction, each safe to retry):

1. ``assess_accounts``  every account active on at least one day of the period P, with what its
                        stored days in P add up to (set-based), and an outcome:
                        ``distribute``, ``held_incomplete`` (a day it was active on is not
                        stored), ``held_order`` (high-water-mark product with a later month
                        already distributed), ``already`` (P distributed, still adds up), or
                        ``drift`` (P distributed, but the stored days no longer add up to it).
2. ``compute_fees``     streams the ``distribute`` rows through :func:`investment_jobs.fees.
                        performance_fee` (the one implementation) and COPYs the results back.
3. ``distribute``       one transaction under an advisory lock: the distributions, their
                        ``profit_distribution`` transactions and the accounts' totals and marks,
                        ``INSERT … ON CONFLICT (account_id, period) DO NOTHING``, so a rerun or a
                        concurrent run can never distribute an account's month twice.
   Between 2 and 3 a person approves the computed rows (``operations.approvals``, figures from
   ``jobs.monthly_review``); ``distribute`` writes exactly the approved rows or nothing.
4. ``summarise``        one JSON line naming the decisions applied; the run fails when accounts
                        were held back or drifted.

``gross_profit`` is Σ daily_return of the account's stored days in P (deposits and withdrawals
move balances, not returns); ``opening_balance`` is the first stored day's opening and
``closing_balance`` the last stored day's closing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.business_dates import Period
from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.db.staging import RunReference, Staging
from investment_jobs.fees import performance_fee
from investment_jobs.jobs.decisions import decisions_of_run
from investment_jobs.views.summaries import record_run_quality, refresh_period

if TYPE_CHECKING:
    import psycopg

JOB = "md"
ROLES = ("assessed", "missing", "ready")
LOCK_KEY = 0x1D15_7B17  # pg_advisory_xact_lock key: one distribution at a time, any period
OUTCOMES = ("distribute", "already", "held_incomplete", "held_order", "held_error", "drift")


class DistributionIncomplete(Exception):
    """Accounts were held back, drifted, or changed meanwhile: an operator must look."""


def reference_for(period: Period, run_id: str) -> RunReference:
    return RunReference(JOB, run_id, period=period)


def staging(run: RunReference) -> Staging:
    return Staging(run, ROLES)


def _params(run: RunReference, **more: Any) -> dict[str, Any]:
    period: Period = run.period  # type: ignore[assignment]
    return {"period": period.key, "start": period.first_day, "end": period.last_day, "run": run.run_id, **more}


# --- the statements ----------------------------------------------------------------------------
CREATE_ASSESSED = """
    CREATE UNLOGGED TABLE {assessed} AS
    WITH active AS (
        SELECT a.id AS account_id, a.product_id, a.user_id, a.high_water_mark,
               greatest(%(start)s::date, (a.opened_at AT TIME ZONE %(tz)s)::date) AS active_start,
               least(%(end)s::date, coalesce((a.closed_at AT TIME ZONE %(tz)s)::date - 1,
                                             %(end)s::date)) AS active_end
        FROM investment.accounts a
        WHERE a.status <> 'suspended'
          AND (a.opened_at AT TIME ZONE %(tz)s)::date <= %(end)s
          AND (a.closed_at IS NULL OR (a.closed_at AT TIME ZONE %(tz)s)::date > %(start)s)
          -- active on at least one day: one opened and closed on the same day never was
          AND (a.closed_at IS NULL
               OR (a.closed_at AT TIME ZONE %(tz)s)::date > (a.opened_at AT TIME ZONE %(tz)s)::date)
    ), by_account AS (  -- every account's stored days of P, in one hash aggregate over P's partition
        SELECT dp.account_id, count(*) AS days, min(dp.date) AS first_day, max(dp.date) AS last_day,
               sum(dp.daily_return) AS gross_profit
        FROM investment.daily_performance dp
        WHERE dp.date BETWEEN %(start)s AND %(end)s
        GROUP BY dp.account_id
    ), edges AS (
        -- the first stored day's opening, the last one's closing and cumulative. Usually those days
        -- are P's first and last: two dates' rows, each in one hash join. Only an account whose first
        -- (or last) stored day is another looks its row up by its key (LIMIT keeps the lateral a
        -- subquery whose one-time filter skips it for every other account).
        SELECT s.account_id, s.days, s.first_day, s.last_day, s.gross_profit,
               coalesce(f.opening_balance, fo.opening_balance) AS opening_balance,
               coalesce(l.closing_balance, lo.closing_balance) AS closing_balance,
               coalesce(l.cumulative_return, lo.cumulative_return) AS cumulative_return
        FROM by_account s
        LEFT JOIN investment.daily_performance f
               ON f.account_id = s.account_id AND f.date = %(start)s AND s.first_day = %(start)s
        LEFT JOIN LATERAL (
            SELECT o.opening_balance FROM investment.daily_performance o
            WHERE f.account_id IS NULL AND o.account_id = s.account_id AND o.date = s.first_day LIMIT 1
        ) fo ON true
        LEFT JOIN investment.daily_performance l
               ON l.account_id = s.account_id AND l.date = %(end)s AND s.last_day = %(end)s
        LEFT JOIN LATERAL (
            SELECT o.closing_balance, o.cumulative_return FROM investment.daily_performance o
            WHERE l.account_id IS NULL AND o.account_id = s.account_id AND o.date = s.last_day LIMIT 1
        ) lo ON true
    ), stored AS (
        SELECT s.account_id, s.gross_profit, s.opening_balance, s.closing_balance, s.cumulative_return,
               -- the days it was active on that are stored: all of them, unless a stored day lies
               -- outside those days (rare: then they are counted by the account's key)
               CASE WHEN s.first_day >= ac.active_start AND s.last_day <= ac.active_end THEN s.days
                    ELSE (SELECT count(*) FROM investment.daily_performance w
                          WHERE w.account_id = s.account_id AND w.date BETWEEN ac.active_start AND ac.active_end)
               END AS stored_days
        FROM edges s JOIN active ac USING (account_id)
    )
    SELECT ac.account_id, ac.product_id, ac.user_id, ac.high_water_mark,
           ac.active_start, ac.active_end, ac.active_end - ac.active_start + 1 AS expected_days,
           coalesce(s.stored_days, 0) AS stored_days,
           s.gross_profit, s.opening_balance, s.closing_balance, s.cumulative_return,
           p.currency,
           -- the rate of a period is the one its first distribution run used
           coalesce(r.performance_fee_percentage, p.performance_fee_percentage)
               AS performance_fee_percentage,
           coalesce(r.fee_model, p.fee_model) AS fee_model,
           p.performance_fee_percentage AS product_fee_percentage, p.fee_model AS product_fee_model,
           r.fixed_by_run AS rate_fixed_by_run,
           NULL::text AS hold_reason,
           -- a distributed month's effective figures: its latest correction's, else its own
           d.id AS distribution_id, coalesce(c.gross_profit, d.gross_profit) AS distributed_gross,
           coalesce(c.opening_balance, d.opening_balance) AS distributed_opening,
           coalesce(c.closing_balance, d.closing_balance) AS distributed_closing,
           coalesce(c.performance_fee_amount, d.performance_fee_amount) AS distributed_fee,
           coalesce(c.net_profit, d.net_profit) AS distributed_net,
           d.performance_fee_percentage AS distributed_rate, d.fee_model AS distributed_fee_model,
           d.high_water_mark_before AS distributed_mark_before,
           CASE
             WHEN d.id IS NOT NULL AND (coalesce(c.gross_profit, d.gross_profit),
                                        coalesce(c.opening_balance, d.opening_balance),
                                        coalesce(c.closing_balance, d.closing_balance))
                  IS DISTINCT FROM (s.gross_profit, s.opening_balance, s.closing_balance)
               THEN 'drift'
             WHEN d.id IS NOT NULL THEN 'already'
             WHEN coalesce(s.stored_days, 0) < ac.active_end - ac.active_start + 1
               THEN 'held_incomplete'
             WHEN coalesce(r.fee_model, p.fee_model) = 'high_water_mark' AND EXISTS (
                  SELECT 1 FROM investment.distributions l
                  WHERE l.account_id = ac.account_id AND l.period > %(period)s)
               THEN 'held_order'
             ELSE 'distribute'
           END AS outcome
    FROM active ac
    JOIN investment.products p ON p.id = ac.product_id
    LEFT JOIN investment.distribution_rates r ON r.period = %(period)s AND r.product_id = ac.product_id
    LEFT JOIN stored s USING (account_id)
    LEFT JOIN investment.distributions d ON d.account_id = ac.account_id AND d.period = %(period)s
    LEFT JOIN LATERAL (SELECT * FROM investment.distribution_corrections dc WHERE dc.distribution_id = d.id
                       ORDER BY dc.id DESC LIMIT 1) c ON true
"""
ASSESSED_KEY = "ALTER TABLE {assessed} ADD PRIMARY KEY (account_id)"
CREATE_MISSING = """
    CREATE UNLOGGED TABLE {missing} AS
    SELECT a.account_id, m.date
    FROM {assessed} a
    -- per held account, by its key: a join over the month's rows hashed all of them (every account's
    -- days) to find those of the few accounts held back
    CROSS JOIN LATERAL (
        SELECT g.day::date AS date FROM generate_series(a.active_start, a.active_end, interval '1 day') g(day)
        EXCEPT
        SELECT dp.date FROM investment.daily_performance dp
        WHERE dp.account_id = a.account_id AND dp.date BETWEEN a.active_start AND a.active_end
    ) m
    WHERE a.outcome = 'held_incomplete'
"""
CREATE_READY = """
    CREATE UNLOGGED TABLE {ready} (
        account_id uuid PRIMARY KEY, status text NOT NULL, fee numeric NOT NULL,
        net numeric NOT NULL, high_water_mark_after numeric)
"""
COUNT_OUTCOMES = "SELECT outcome, count(*) FROM {assessed} GROUP BY 1"

EMPTY_READY = "TRUNCATE {ready}"
FORGET_HELD_ERRORS = "UPDATE {assessed} SET outcome = 'distribute', hold_reason = NULL WHERE outcome = 'held_error'"
TO_DISTRIBUTE = """
    SELECT account_id, gross_profit, performance_fee_percentage, currency, fee_model,
           cumulative_return, high_water_mark
    FROM {assessed} WHERE outcome = 'distribute'
"""
COPY_READY = "COPY {ready} (account_id, status, fee, net, high_water_mark_after) FROM STDIN"
HOLD_WITH_REASON = "UPDATE {assessed} SET outcome = 'held_error', hold_reason = %s WHERE account_id = %s"

# The first run that distributes a product's accounts for P fixes P's rate for that product.
FIX_PERIOD_RATES = """
    INSERT INTO investment.distribution_rates (period, product_id, performance_fee_percentage, fee_model,
                                               fixed_by_run)
    SELECT DISTINCT %(period)s, s.product_id, s.performance_fee_percentage, s.fee_model, %(run)s
    FROM {ready} r JOIN {assessed} s USING (account_id)
    ON CONFLICT (period, product_id) DO NOTHING
"""
DISTRIBUTE = """
    WITH prepared AS (
        SELECT s.*, r.status, r.fee, r.net, r.high_water_mark_after,
               gen_random_uuid() AS new_distribution_id,
               CASE WHEN r.status = 'distributed' THEN gen_random_uuid() END AS new_transaction_id
        FROM {ready} r
        JOIN {assessed} s USING (account_id)
        JOIN investment.accounts a ON a.id = r.account_id
        JOIN investment.distribution_rates fr ON fr.period = %(period)s AND fr.product_id = s.product_id
        -- the mark the fee was computed from must still be the account's mark, and the rate the
        -- period's (another run may have fixed it meanwhile: then this one is not written)
        WHERE a.high_water_mark = s.high_water_mark
          AND (fr.performance_fee_percentage, fr.fee_model) = (s.performance_fee_percentage, s.fee_model)
    ), inserted AS (
        INSERT INTO investment.distributions (
            id, account_id, product_id, user_id, period, period_start, period_end,
            opening_balance, closing_balance, gross_profit, performance_fee_percentage,
            performance_fee_amount, net_profit, status, distributed_at, transaction_id,
            fee_model, cumulative_return, high_water_mark_before, high_water_mark_after)
        SELECT new_distribution_id, account_id, product_id, user_id, %(period)s, %(start)s, %(end)s,
               opening_balance, closing_balance, gross_profit, performance_fee_percentage,
               fee, net, status, CASE WHEN status = 'distributed' THEN now() END, new_transaction_id,
               fee_model, cumulative_return,
               CASE WHEN fee_model = 'high_water_mark' THEN high_water_mark END,
               high_water_mark_after
        FROM prepared
        ON CONFLICT (account_id, period) DO NOTHING
        RETURNING id, account_id, user_id, status, net_profit, closing_balance, transaction_id,
                  fee_model, high_water_mark_after
    ), ledger AS (
        INSERT INTO investment.transactions (
            id, account_id, user_id, type, amount, balance_before, balance_after,
            distribution_id, distribution_period, status, processed_at)
        SELECT transaction_id, account_id, user_id, 'profit_distribution', net_profit,
               closing_balance, closing_balance, id, %(period)s, 'completed', now()
        FROM inserted WHERE status = 'distributed'
    )
    UPDATE investment.accounts a
    SET total_profit_distributed = a.total_profit_distributed
            + CASE WHEN i.status = 'distributed' THEN i.net_profit ELSE 0 END,
        high_water_mark = CASE WHEN i.fee_model = 'high_water_mark'
                               THEN i.high_water_mark_after ELSE a.high_water_mark END,
        updated_at = now()  -- stamped here: the row trigger is skipped (migration 0013)
    FROM inserted i
    WHERE a.id = i.account_id
    RETURNING i.status
"""
COUNT_READY = "SELECT count(*) FROM {ready}"

PERIOD_TOTALS = """
    SELECT p.currency, d.status, count(*), sum(d.gross_profit), sum(d.performance_fee_amount), sum(d.net_profit)
    FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
    WHERE d.period = %(period)s GROUP BY 1, 2 ORDER BY 1, 2
"""
HELD_BACK = """
    SELECT a.account_id::text, a.outcome,
           coalesce(array_agg(m.date ORDER BY m.date) FILTER (WHERE m.date IS NOT NULL), ARRAY[]::date[]),
           a.hold_reason
    FROM {assessed} a LEFT JOIN {missing} m USING (account_id)
    WHERE a.outcome IN ('held_incomplete', 'held_order', 'held_error')
    GROUP BY 1, 2, 4 ORDER BY 1
"""
# Products whose rate changed after the period's first run: the period keeps the first rate.
RATES_CHANGED_SINCE = """
    SELECT DISTINCT product_id::text, performance_fee_percentage, fee_model, product_fee_percentage,
           product_fee_model, rate_fixed_by_run
    FROM {assessed}
    WHERE rate_fixed_by_run IS NOT NULL
      AND (performance_fee_percentage, fee_model) IS DISTINCT FROM (product_fee_percentage, product_fee_model)
    ORDER BY 1
"""
# Drifted at assessment and still drifted now (a decision of this run may have corrected them).
DRIFTED = """
    SELECT a.account_id::text, coalesce(c.gross_profit, d.gross_profit), a.gross_profit,
           coalesce(c.opening_balance, d.opening_balance), a.opening_balance,
           coalesce(c.closing_balance, d.closing_balance), a.closing_balance
    FROM {assessed} a JOIN investment.distributions d ON d.id = a.distribution_id
    LEFT JOIN LATERAL (SELECT * FROM investment.distribution_corrections dc WHERE dc.distribution_id = d.id
                       ORDER BY dc.id DESC LIMIT 1) c ON true
    WHERE a.outcome = 'drift'
      AND (coalesce(c.gross_profit, d.gross_profit), coalesce(c.opening_balance, d.opening_balance),
           coalesce(c.closing_balance, d.closing_balance))
          IS DISTINCT FROM (a.gross_profit, a.opening_balance, a.closing_balance)
    ORDER BY 1
"""


# --- 1. assess ---------------------------------------------------------------------------------
def assess_accounts(conn: psycopg.Connection, run: RunReference, timezone: str) -> dict[str, int]:
    """Create the run's staging tables and decide each account's outcome for the period (refused
    for a month whose daily rows data_cleanup archived: :class:`~investment_jobs.jobs.daily_months.MonthArchived`)."""
    from investment_jobs.jobs.daily_months import refuse_if_archived

    refuse_if_archived(conn, run.period)  # type: ignore[arg-type]
    tables = staging(run)
    tables.recreate(conn, CREATE_ASSESSED, ASSESSED_KEY, CREATE_MISSING, CREATE_READY, params=_params(run, tz=timezone))
    counts = dict(tables.execute(conn, COUNT_OUTCOMES).fetchall())
    conn.rollback()
    return {outcome: int(n) for outcome, n in counts.items()}


# --- 2. fees -----------------------------------------------------------------------------------
def compute_fees(conn: psycopg.Connection, run: RunReference, batch: int = 5000) -> dict[str, int]:
    """Fee and net for each account to distribute, in Decimal, streamed (memory bounded by batch).

    An account whose fee cannot be computed (a value the fee model refuses) is held back with the
    reason (outcome ``held_error``); it never stops the others.
    """
    tables = staging(run)
    computed = 0
    errors: list[tuple[str, str]] = []
    with conn.transaction():
        tables.execute(conn, EMPTY_READY)
        tables.execute(conn, FORGET_HELD_ERRORS)  # a retry starts afresh
        # A server-side cursor and a COPY cannot share the connection at once: fetch, then copy.
        with conn.cursor(name=f"md_fees_{tables.tag}") as source, conn.cursor() as sink:
            source.execute(tables.sql(TO_DISTRIBUTE))
            while rows := source.fetchmany(batch):
                with sink.copy(tables.sql(COPY_READY)) as copy:
                    for account_id, gross, rate, currency, model, cumulative, mark in rows:
                        try:
                            if gross is None:
                                raise ValueError("no stored day in the period to distribute")
                            fee = performance_fee(gross, rate, currency, model, cumulative, mark)
                        except (ValueError, ArithmeticError) as exc:
                            errors.append((str(account_id), f"the fee could not be computed: {str(exc)[:300]}"))
                            continue
                        copy.write_row((account_id, fee.status, fee.fee, fee.net, fee.high_water_mark_after))
                        computed += 1
        if errors:
            conn.cursor().executemany(tables.sql(HOLD_WITH_REASON), [(why, account_id) for account_id, why in errors])
    return {"computed": computed, "held_error": len(errors)}


# --- 3. distribute -----------------------------------------------------------------------------
class ApprovalMismatch(Exception):
    """The computed rows are not the ones that were approved: nothing is written."""


def distribute(conn: psycopg.Connection, run: RunReference, approved: dict[str, Any]) -> dict[str, int]:
    """Write the month for every computed account, once, atomically (see the module's docstring),
    provided the computed rows are exactly the approved ones (their fingerprint)."""
    from investment_jobs.jobs.monthly_review import fingerprint

    tables = staging(run)
    params = _params(run)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        rows_now, digest = fingerprint(conn, run)
        if not approved.get("approved") or digest != approved.get("fingerprint"):
            raise ApprovalMismatch(
                f"period {run.key}: the {rows_now} computed row(s) are not the ones approved "
                f"({approved.get('accounts')} row(s), fingerprint {approved.get('fingerprint')}); nothing was "
                "written. Rerun the period: its figures are computed and asked for again")
        tables.execute(conn, FIX_PERIOD_RATES, params)
        rows = tables.execute(conn, DISTRIBUTE, params).fetchall()
        computed = tables.execute(conn, COUNT_READY).fetchone()[0]
        refresh_period(conn, run.key)  # the fund view's sums of P, in P's transaction
    written = {"distributed": 0, "no_profit": 0}
    for (status,) in rows:
        written[status] += 1
    # Computed but not written: another run got there first, or the mark or the period's rate moved.
    written["not_written"] = int(computed) - len(rows)
    return written


# --- 4. summary --------------------------------------------------------------------------------
def summarise(conn: psycopg.Connection, run: RunReference, counts: dict[str, Any]) -> dict[str, Any]:
    """Counts by outcome, money per currency for the period, held-back and drifted accounts."""
    tables = staging(run)
    totals = conn.execute(PERIOD_TOTALS, _params(run)).fetchall()
    held = tables.execute(conn, HELD_BACK).fetchall()
    outcomes = dict(tables.execute(conn, COUNT_OUTCOMES).fetchall())
    rate_changes = tables.execute(conn, RATES_CHANGED_SINCE).fetchall()
    drift = tables.execute(conn, DRIFTED).fetchall()
    conn.rollback()
    held_by_reason: dict[str, int] = {}
    for _, reason, _, _ in held:
        held_by_reason[reason] = held_by_reason.get(reason, 0) + 1
    record_run_quality(conn, "monthly_distribution", run.key, run.run_id,
                       active=sum(int(v) for v in outcomes.values()), held_back_by_reason=held_by_reason)
    decided = decisions_of_run(conn, "monthly_distribution", run.run_id)

    def differences(row: tuple) -> dict[str, dict[str, str]]:
        names = ("gross_profit", "opening_balance", "closing_balance")
        pairs = zip(names, zip(row[1::2], row[2::2], strict=True), strict=True)
        return {n: {"distributed": str(was), "stored_days_now": str(now)}
                for n, (was, now) in pairs if was != now}

    money: dict[str, dict[str, Any]] = {}
    for currency, status, n, gross, fee, net in totals:
        entry = money.setdefault(currency, {"accounts": {}, "gross_profit": Decimal(0),
                                            "performance_fees": Decimal(0), "net_profit": Decimal(0)})
        entry["accounts"][status] = n
        if status == "distributed":
            entry["gross_profit"] += gross
            entry["performance_fees"] += fee
            entry["net_profit"] += net
    return {
        "job_name": "monthly_distribution",
        "period": run.key,
        "run_id": run.run_id,
        "accounts_active_in_period": sum(int(v) for v in outcomes.values()),
        "outcomes": {k: int(outcomes.get(k, 0)) for k in OUTCOMES},
        "written_this_run": {k: counts.get(k, 0) for k in ("distributed", "no_profit", "not_written")},
        "period_totals_by_currency": {
            cur: {**v, **{k: str(v[k]) for k in ("gross_profit", "performance_fees", "net_profit")}}
            for cur, v in money.items()
        },
        "held_back_count": len(held),
        "held_back": [{"account_id": a, "reason": o, "missing_dates": [d.isoformat() for d in days],
                       **({"why": why} if why else {})}
                      for a, o, days, why in held[:SUMMARY_ID_LIMIT]],
        "rates_kept_from_first_run": [
            {"product_id": pid, "period_rate": str(rate), "period_fee_model": model, "product_rate_now": str(now),
             "product_fee_model_now": model_now, "fixed_by_run": fixed_by}
            for pid, rate, model, now, model_now, fixed_by in rate_changes],
        "drift_count": len(drift),
        "processed": counts.get("distributed", 0) + counts.get("no_profit", 0),
        "error_count": len(held) + len(drift),
        "drift": [{"account_id": r[0], "differences": differences(r)} for r in drift[:SUMMARY_ID_LIMIT]],
        "decisions": decided,
    }


def check_complete(summary: dict[str, Any]) -> None:
    """Fail the run, in words an operator can act on, when any account needs attention."""
    problems = []
    if summary["held_back_count"]:
        later = "a later month of this high-water-mark account is already distributed"

        def why(held: dict[str, Any]) -> str:
            if held["missing_dates"]:
                return "missing " + ", ".join(held["missing_dates"][:5])
            return held.get("why") or later

        listed = "; ".join(f"{h['account_id']} ({why(h)})" for h in summary["held_back"][:10])
        problems.append(f"{summary['held_back_count']} account(s) held back, not distributed: {listed}. "
                        "Backfill daily_performance for the missing dates, then rerun this period")
    if summary["drift_count"]:
        listed = "; ".join(f"{d['account_id']} {d['differences']}" for d in summary["drift"][:10])
        problems.append(f"{summary['drift_count']} distributed account(s) no longer match their stored days "
                        f"(a day was rerun after the distribution): {listed}. The distributions were left "
                        "as they are; decide on a correction")
    if summary["written_this_run"]["not_written"]:
        problems.append(f"{summary['written_this_run']['not_written']} computed account(s) were not written "
                        "(distributed by another run meanwhile, or their high-water mark moved); "
                        "rerun the period")
    if problems:
        raise DistributionIncomplete(f"period {summary['period']}: " + " | ".join(problems))


def record_partition(conn: psycopg.Connection, run: RunReference) -> None:
    """The run succeeded: its partition is stored (investment.stored_partitions, beside the asset event)."""
    from investment_jobs.jobs.partitions import MONTHLY, record_stored

    record_stored(conn, MONTHLY, run.key, run.run_id)


def drop_staging(conn: psycopg.Connection, run: RunReference) -> None:
    staging(run).drop(conn)
