"""ml_performance_sync: the engine's agent snapshots, and a reconciliation of its account figures.

1. ``sync_agents``  GET /api/v1/agents/performance for the run's date D (the hour's date, which may
                    still be open), validates each item, upserts one row per (agent_id, date):
                    the hourly reruns of D refresh it and never duplicate.
2. ``reconcile``    for each of the last RECONCILE_DAYS ended dates before D, pages the bulk
                    listing and compares it with the stored ``daily_performance`` rows, field by
                    field; ``performance_discrepancies`` then holds exactly that date's current
                    differences. The money tables are never touched.

Each step is one transaction; bad items are rejected with a reason into ``ml_sync_rejects``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import sql

from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.ml_engine.validation import (
    MAX_REASON,
    DailyItem,
    agent_data_json,
    as_sent,
    column_decimal,
    storable_text,
    unstorable_json,
    validate_item,
)
from investment_jobs.money import dumps_lenient, quoted

if TYPE_CHECKING:
    import psycopg

    from investment_jobs.ml_engine.client import MLEngineClient

log = logging.getLogger("investment_jobs.sync")

AGENT_NUMERIC = ("win_rate", "pnl", "sharpe_ratio", "max_drawdown")
# (decimals the column keeps, exclusive bound of the absolute value): migration 0003's columns.
AGENT_COLUMNS = {"win_rate": (10, 10**10), "pnl": (8, 10**12), "sharpe_ratio": (10, 10**10),
                 "max_drawdown": (10, 10**10)}
MAX_AGENT_ID = 200  # characters; agent_id is part of agent_performance's primary key
AGENT_KNOWN = {"agent_id", "product_id", "date", "total_trades", *AGENT_NUMERIC}
COMPARED = ("opening_balance", "closing_balance", "daily_return", "daily_return_percentage",
            "trades_executed", "winning_trades", "losing_trades")
ROW = "(row)"  # the field name of a whole row present on one side only


def validate_agent_item(raw: Any, day: date) -> tuple[dict[str, Any] | None, str]:
    """(typed row, '') for a good agent item, or (None, reason)."""
    if not isinstance(raw, dict):
        return None, f"item is not a JSON object: {type(raw).__name__}"
    problems = []
    agent_id = raw.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id.strip():
        problems.append("missing or empty agent_id")
    elif len(agent_id) > MAX_AGENT_ID or unstorable_json(agent_id):
        problems.append(f"agent_id is too long or not storable text: {quoted(agent_id)}")
    try:
        product_id = str(uuid.UUID(str(raw.get("product_id"))[:64]))
    except ValueError:
        product_id = None
        problems.append(f"product_id is not a UUID: {quoted(raw.get('product_id'))}")
    if raw.get("date") != day.isoformat():
        problems.append(f"item date {quoted(raw.get('date'))} is not {day}")
    row: dict[str, Any] = {"agent_id": agent_id, "product_id": product_id}
    trades = raw.get("total_trades")
    if trades is not None and (type(trades) is not int or not 0 <= trades < 2**31):
        problems.append(f"total_trades is not a whole number from 0 to 2147483647: {quoted(trades)}")
    row["total_trades"] = trades
    for name in AGENT_NUMERIC:
        value = raw.get(name)
        if value is None:
            row[name] = None
            continue
        scale, bound = AGENT_COLUMNS[name]
        row[name], problem = column_decimal(name, value, scale, bound)
        if problem:
            problems.append(problem)
    extra = {k: v for k, v in raw.items() if k not in AGENT_KNOWN}
    row["metrics"], why = agent_data_json(extra)
    if why:
        problems.append(why.replace("ml_agent_data", "a metric", 1))
    if problems:
        return None, storable_text("; ".join(problems), MAX_REASON)
    return row, ""


def _reject(cur: psycopg.Cursor, run_id: str, day: date, source: str, key: str, reason: str, raw: Any) -> None:
    cur.execute(
        """INSERT INTO investment.ml_sync_rejects (run_id, date, source, item_key, reason, item)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (run_id, day, source, storable_text(key, 64), storable_text(reason, MAX_REASON), dumps_lenient(raw)))


def sync_agents(conn: psycopg.Connection, client: MLEngineClient, day: date, run_id: str) -> dict[str, int]:
    items = client.agents_performance(day)  # one small list per day, fetched before any write
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("DELETE FROM investment.ml_sync_rejects WHERE run_id = %s AND date = %s AND source = 'agents'",
                    (run_id, day))
        cur.execute("""CREATE TEMP TABLE agent_items (agent_id text, product_id uuid, total_trades integer,
                       win_rate numeric, pnl numeric, sharpe_ratio numeric, max_drawdown numeric,
                       metrics jsonb) ON COMMIT DROP""")
        bad: list[tuple[str, str, Any]] = []
        seen: set[str] = set()
        with cur.copy("COPY agent_items FROM STDIN") as copy:  # nothing else runs on conn meanwhile
            for raw in items:
                row, reason = validate_agent_item(raw, day)
                if row is not None and row["agent_id"] in seen:
                    row, reason = None, "the same agent_id twice for one date"
                if row is None:
                    bad.append((str(raw.get("agent_id", "")) if isinstance(raw, dict) else "", reason, raw))
                    continue
                seen.add(row["agent_id"])
                copy.write_row((row["agent_id"], row["product_id"], row["total_trades"],
                                *(row[n] for n in AGENT_NUMERIC), row["metrics"]))
        for key, reason, raw in bad:
            _reject(cur, run_id, day, "agents", key, reason, raw)
        rejected = len(bad)
        unknown = cur.execute(
            """INSERT INTO investment.ml_sync_rejects (run_id, date, source, item_key, reason, item)
               SELECT %s, %s, 'agents', i.agent_id, 'unknown product ' || i.product_id, to_jsonb(i)
               FROM agent_items i WHERE NOT EXISTS (SELECT 1 FROM investment.products p WHERE p.id = i.product_id)""",
            (run_id, day)).rowcount
        upserted = cur.execute(
            """INSERT INTO investment.agent_performance AS t (agent_id, product_id, date, total_trades, win_rate,
                   pnl, sharpe_ratio, max_drawdown, metrics)
               SELECT i.agent_id, i.product_id, %s, i.total_trades, i.win_rate, i.pnl, i.sharpe_ratio,
                      i.max_drawdown, i.metrics
               FROM agent_items i JOIN investment.products p ON p.id = i.product_id
               ON CONFLICT (agent_id, date) DO UPDATE SET
                   product_id = EXCLUDED.product_id, total_trades = EXCLUDED.total_trades,
                   win_rate = EXCLUDED.win_rate, pnl = EXCLUDED.pnl, sharpe_ratio = EXCLUDED.sharpe_ratio,
                   max_drawdown = EXCLUDED.max_drawdown, metrics = EXCLUDED.metrics
               WHERE (t.product_id, t.total_trades, t.win_rate, t.pnl, t.sharpe_ratio, t.max_drawdown, t.metrics)
                     IS DISTINCT FROM (EXCLUDED.product_id, EXCLUDED.total_trades, EXCLUDED.win_rate,
                                       EXCLUDED.pnl, EXCLUDED.sharpe_ratio, EXCLUDED.max_drawdown,
                                       EXCLUDED.metrics)""", (day,)).rowcount
    return {"agents_received": len(items), "agents_changed": upserted, "agents_rejected": rejected + unknown}


def _field_comparisons() -> sql.Composed:
    """One VALUES row per compared field: (name, stored as text, engine's as text, differs)."""
    row = sql.SQL("({name}, s.{f}::text, e.{f}::text, s.{f} IS DISTINCT FROM e.{f})")
    return sql.SQL(", ").join(row.format(name=sql.Literal(f), f=sql.Identifier(f)) for f in COMPARED)


# Each date's current differences: a field that differs, or a row on one side only (field ROW).
RECORD_DIFFERENCES = sql.SQL("""
    INSERT INTO investment.performance_discrepancies (account_id, date, field, stored_value, engine_value, run_id)
    SELECT coalesce(s.account_id, e.account_id), %(d)s, f.field, f.stored, f.engine, %(run)s
    FROM (SELECT * FROM investment.daily_performance WHERE date = %(d)s) s
    FULL JOIN engine_days e ON e.account_id = s.account_id
    CROSS JOIN LATERAL (
        SELECT {row_field}, CASE WHEN s.account_id IS NULL THEN NULL ELSE 'stored' END,
               CASE WHEN e.account_id IS NULL THEN NULL ELSE 'sent' END,
               s.account_id IS NULL OR e.account_id IS NULL
        UNION ALL
        SELECT * FROM (VALUES {comparisons}) v
        WHERE s.account_id IS NOT NULL AND e.account_id IS NOT NULL
    ) f(field, stored, engine, differs)
    WHERE f.differs
      -- an engine item for an account we do not keep is the engine's business, not a difference
      AND (s.account_id IS NOT NULL
           OR EXISTS (SELECT 1 FROM investment.accounts a WHERE a.id = e.account_id))
    ON CONFLICT (account_id, date, field) DO NOTHING
""").format(row_field=sql.Literal(ROW), comparisons=_field_comparisons())


def reconcile_dates(day: date, days: int) -> list[date]:
    """The ended business dates before the run's own date, newest first."""
    return [day - timedelta(days=n) for n in range(1, days + 1)]


def reconcile_recent_dates(conn: psycopg.Connection, client: MLEngineClient, day: date, run_id: str, days: int,
                           page_size: int) -> dict[str, Any]:
    """:func:`reconcile` for each of the ``days`` ended dates before ``day``."""
    per_date = {d.isoformat(): reconcile(conn, client, d, run_id, page_size) for d in reconcile_dates(day, days)}
    return {"dates": list(per_date), "per_date": per_date}


def reconcile(conn: psycopg.Connection, client: MLEngineClient, day: date, run_id: str, page_size: int,
              max_pages: int | None = None) -> dict[str, int]:
    """Compare one ended date's engine figures with the stored rows; record the differences."""
    from investment_jobs.bulk import cyclic_gc_paused
    from investment_jobs.ml_engine.client import page_limit

    received = rejected = 0
    with conn.transaction(), cyclic_gc_paused():  # pages of engine JSON, as daily_performance's pull
        if max_pages is None:
            accounts = conn.execute("SELECT count(*) FROM investment.accounts").fetchone()[0]
            max_pages = page_limit(accounts, page_size)
        cur = conn.cursor()
        cur.execute("DELETE FROM investment.ml_sync_rejects WHERE run_id = %s AND date = %s AND source = 'accounts'",
                    (run_id, day))
        cur.execute("""CREATE TEMP TABLE engine_days (account_id uuid, opening_balance numeric,
                       closing_balance numeric, daily_return numeric, daily_return_percentage numeric,
                       trades_executed integer, winning_trades integer, losing_trades integer) ON COMMIT DROP""")
        for page in client.iter_daily_performance(day, page_size, max_pages=max_pages):
            received += len(page)
            with cur.copy("COPY engine_days FROM STDIN") as copy:
                bad = []
                for raw in page:
                    item = validate_item(raw, day)
                    if isinstance(item, DailyItem):
                        copy.write_row((item.account_id, item.opening_balance, item.closing_balance,
                                        item.daily_return, item.daily_return_percentage, item.trades_executed,
                                        item.winning_trades, item.losing_trades))
                    else:
                        bad.append((item, raw))
            for item, raw in bad:
                rejected += 1
                _reject(cur, run_id, day, "accounts", item.account_id, item.reason, as_sent(raw))
        cur.execute("DELETE FROM investment.performance_discrepancies WHERE date = %s", (day,))
        found = cur.execute(RECORD_DIFFERENCES, {"d": day, "run": run_id}).rowcount
    return {"received": received, "rejected": rejected, "discrepancies": found}


class SyncRejectsOverTolerance(Exception):
    """More engine items were rejected than SYNC_REJECT_TOLERANCE allows (the good ones were stored)."""


def summarise(conn: psycopg.Connection, run_id: str, synced: dict[str, Any], reconciled: dict[str, Any],
              tolerance: int) -> dict[str, Any]:
    """The run's summary from the two steps' results: snapshots, differences per date, rejects."""
    run_day = date.fromisoformat(synced["business_date"])
    dates = [date.fromisoformat(d) for d in reconciled["dates"]]
    counts = {**{k: v for k, v in synced.items() if k not in ("business_date", "started_at")},
              "accounts_received": sum(v["received"] for v in reconciled["per_date"].values()),
              "accounts_rejected": sum(v["rejected"] for v in reconciled["per_date"].values())}
    rows = conn.execute(
        """SELECT account_id::text, date, field, stored_value, engine_value
           FROM investment.performance_discrepancies WHERE date = ANY(%s) ORDER BY date DESC, account_id, field""",
        (dates,)).fetchall()
    rejects = conn.execute(
        """SELECT source, item_key, reason FROM investment.ml_sync_rejects WHERE run_id = %s
           ORDER BY id LIMIT %s""", (run_id, SUMMARY_ID_LIMIT)).fetchall()
    conn.rollback()
    return {
        "job_name": "ml_performance_sync",
        "business_date": run_day.isoformat(),
        "reconciled_dates": [d.isoformat() for d in dates],
        **counts,
        "discrepancy_count": len(rows),
        "processed": counts.get("agents_received", 0) + counts.get("accounts_received", 0),
        "error_count": counts.get("agents_rejected", 0) + counts.get("accounts_rejected", 0),
        "reject_tolerance": tolerance,
        "discrepancies": [{"account_id": a, "date": d.isoformat(), "field": f, "stored": s, "engine": e}
                          for a, d, f, s, e in rows[:SUMMARY_ID_LIMIT]],
        "rejected": [{"source": s, "key": k, "reason": r} for s, k, r in rejects],
    }


def check_tolerance(summary: dict[str, Any]) -> None:
    """Fail the run past SYNC_REJECT_TOLERANCE; differences alone never fail it (they are logged)."""
    rejected = summary["agents_rejected"] + summary["accounts_rejected"]
    if rejected > summary["reject_tolerance"]:
        listed = "; ".join(f"{r['source']} {r['key'] or '(no id)'}: {r['reason']}" for r in summary["rejected"][:20])
        raise SyncRejectsOverTolerance(f"{rejected} engine item(s) rejected (tolerance {summary['reject_tolerance']}); "
                                       f"the good ones were stored. Rejected: {listed}")


def warn_about_differences(summary: dict[str, Any]) -> None:
    if summary["discrepancy_count"]:
        log.warning("%d difference(s) between the ML engine and the stored daily_performance rows; "
                    "see investment.performance_discrepancies", summary["discrepancy_count"])
