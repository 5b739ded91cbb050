"""The fund view's sections: small reads of the summary tables, shaped with pandas.

Every amount stays a ``Decimal`` (pandas ``object`` columns): nothing here goes through float.
Amounts are never summed across currencies; a section's frame always carries its ``currency``.
The account section reads the raw tables by their account-id indexes, one account at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import psycopg


@dataclass(frozen=True)
class Filters:
    """What the page's filters ask for: a business-date range, and optionally one product or currency."""

    start: date
    end: date
    product: str | None = None  # a product id
    currency: str | None = None

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "product": self.product, "currency": self.currency,
                "first_period": f"{self.start:%Y-%m}", "last_period": f"{self.end:%Y-%m}"}


def _frame(conn: psycopg.Connection, query: str, params: dict[str, Any], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    rows = conn.execute(query, params).fetchall()
    return pd.DataFrame(rows, columns=columns, dtype=object)


PRODUCT_FILTER = "(%(product)s::uuid IS NULL OR b.product_id = %(product)s::uuid) AND " \
                 "(%(currency)s::text IS NULL OR b.currency = %(currency)s)"


def products(conn: psycopg.Connection) -> pd.DataFrame:
    return _frame(conn, "SELECT id::text, name, currency FROM investment.products ORDER BY name", {},
                  ["product_id", "product", "currency"])


BOOK = f"""
    SELECT b.date, b.product_id::text, p.name, b.currency, b.accounts, b.closing_balance, b.opening_balance,
           b.daily_return
    FROM investment.book_daily b JOIN investment.products p ON p.id = b.product_id
    WHERE b.date BETWEEN %(start)s AND %(end)s AND {PRODUCT_FILTER}
    ORDER BY b.date, p.name
"""  # noqa: S608 - constants of this module


def book(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """Assets under management (closing balances) and accounts, per product and business date."""
    return _frame(conn, BOOK, f.params(), ["date", "product_id", "product", "currency", "accounts",
                                           "aum", "opening_balance", "daily_return"])


PAYOUTS = """
    SELECT b.date, b.currency, b.paid_count, b.paid_amount, b.reversed_count, b.reversed_amount, b.failed_count,
           b.failed_amount, b.in_flight_count, b.in_flight_amount
    FROM investment.payouts_daily b
    WHERE b.date BETWEEN %(start)s AND %(end)s AND (%(currency)s::text IS NULL OR b.currency = %(currency)s)
    ORDER BY b.date, b.currency
"""


def payouts(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """Withdrawals paid, reversed, failed and in flight, per business date and currency; ``net_outflow``
    is paid − reversed (the book's net flow out through withdrawals)."""
    frame = _frame(conn, PAYOUTS, f.params(), ["date", "currency", "paid_count", "paid", "reversed_count",
                                               "reversed", "failed_count", "failed", "in_flight_count", "in_flight"])
    frame["net_outflow"] = [p - r for p, r in zip(frame["paid"], frame["reversed"], strict=True)]
    return frame


def performance(book_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each product's time-weighted return over the range, from the book: a day's product return is
    Σ daily_return ÷ Σ opening_balance of its accounts, chained over the days. Returns (per product:
    days and TWR %, per product and date: the cumulative TWR %). Decimal throughout."""
    import pandas as pd

    series: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    for (product_id, product, currency), rows in book_frame.groupby(["product_id", "product", "currency"],
                                                                    sort=True):
        growth = Decimal(1)
        for day, opening, ret in zip(rows["date"], rows["opening_balance"], rows["daily_return"], strict=True):
            if opening:
                growth *= 1 + ret / opening
            series.append({"date": day, "product": product, "currency": currency,
                           "cumulative_twr_pct": ((growth - 1) * 100).quantize(Decimal("0.0001"))})
        totals.append({"product_id": product_id, "product": product, "currency": currency, "days": len(rows),
                       "twr_pct": ((growth - 1) * 100).quantize(Decimal("0.0001"))})
    return (pd.DataFrame(totals, columns=["product_id", "product", "currency", "days", "twr_pct"], dtype=object),
            pd.DataFrame(series, columns=["date", "product", "currency", "cumulative_twr_pct"], dtype=object))


SPREAD = f"""
    SELECT b.product_id::text, b.return_buckets, b.best, b.worst
    FROM investment.book_daily b WHERE b.date = %(day)s AND {PRODUCT_FILTER}
"""  # noqa: S608 - constants of this module


def return_spread(conn: psycopg.Connection, f: Filters, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The spread of the accounts' daily returns on ``day`` (a histogram: accounts per bucket) and
    the best and worst accounts (five each)."""
    import pandas as pd

    from investment_jobs.views.summaries import RANKED, RETURN_BUCKET_EDGES

    edges = [Decimal(e) for e in RETURN_BUCKET_EDGES]
    labels = [f"< {edges[0]}%"] + [f"{lo}% to {hi}%" for lo, hi in zip(edges, edges[1:], strict=False)] + \
        [f"≥ {edges[-1]}%"]
    counts = [0] * len(labels)
    ranked: list[dict[str, Any]] = []
    for _, buckets, best, worst in conn.execute(SPREAD, {**f.params(), "day": day}).fetchall():
        for bucket, accounts in buckets.items():
            counts[int(bucket)] += int(accounts)
        ranked += [{**r, "rank": "best"} for r in best] + [{**r, "rank": "worst"} for r in worst]
    histogram = pd.DataFrame({"bucket": labels, "accounts": counts}, dtype=object)
    for r in ranked:
        r["daily_return_percentage"] = Decimal(r["daily_return_percentage"])
        r["daily_return"] = Decimal(r["daily_return"])
    best = sorted((r for r in ranked if r["rank"] == "best"), key=lambda r: (-r["daily_return_percentage"],
                                                                            r["account_id"]))[:RANKED]
    worst = sorted((r for r in ranked if r["rank"] == "worst"), key=lambda r: (r["daily_return_percentage"],
                                                                              r["account_id"]))[:RANKED]
    extremes = pd.DataFrame(best + worst, columns=["rank", "account_id", "daily_return_percentage", "daily_return"],
                            dtype=object)
    return histogram, extremes


DISTRIBUTIONS = f"""
    SELECT b.period, b.currency, sum(b.accounts), sum(b.distributed_accounts), sum(b.no_profit_accounts),
           sum(b.gross_profit), sum(b.performance_fee_amount), sum(b.net_profit), sum(b.below_high_water_mark)
    FROM investment.distribution_monthly b
    WHERE b.period BETWEEN %(first_period)s AND %(last_period)s AND {PRODUCT_FILTER}
    GROUP BY b.period, b.currency ORDER BY b.period, b.currency
"""  # noqa: S608 - constants of this module


def distributions(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """Per month and currency: accounts, gross profit, fees, net profit, and high-water-mark accounts
    below their mark."""
    return _frame(conn, DISTRIBUTIONS, f.params(),
                  ["period", "currency", "accounts", "distributed", "no_profit", "gross_profit", "fees", "net_profit",
                   "below_high_water_mark"])


WAITING = """
    SELECT w.id::text, w.account_id::text, w.amount, w.currency, w.claimed_at,
           CASE WHEN w.review_status = 'pending_review' THEN 'review' ELSE 'operator' END,
           coalesce(w.review_reason, w.needs_operator), w.operator_case, w.claimed_by_run
    FROM investment.withdrawal_requests w
    WHERE w.status = 'processing' AND (w.review_status = 'pending_review' OR w.needs_operator IS NOT NULL)
      AND (%(currency)s::text IS NULL OR w.currency = %(currency)s)
    ORDER BY w.claimed_at, w.id LIMIT 200
"""


def waiting(conn: psycopg.Connection, f: Filters) -> pd.DataFrame:
    """Requests waiting for a review or an operator (the oldest 200)."""
    return _frame(conn, WAITING, f.params(), ["request_id", "account_id", "amount", "currency", "claimed_at",
                                              "waits_for", "why", "case", "run_id"])


QUALITY = """
    SELECT q.subject, q.active_accounts, q.stored, q.missing, q.rejected, q.rejected_by_reason,
           coalesce(r.differences, 0), r.business_date IS NOT NULL
    FROM investment.run_quality q
    LEFT JOIN investment.stripe_reconciliations r ON r.business_date = q.subject::date
    WHERE q.job = 'daily_performance' AND q.subject BETWEEN %(start)s::text AND %(end)s::text
    UNION ALL
    SELECT r.business_date::text, NULL, NULL, 0, 0, '{}'::jsonb, r.differences, true
    FROM investment.stripe_reconciliations r
    WHERE r.business_date BETWEEN %(start)s AND %(end)s AND NOT EXISTS (
        SELECT 1 FROM investment.run_quality q WHERE q.job = 'daily_performance' AND q.subject = r.business_date::text)
    ORDER BY 1
"""
HELD_MONTHS = """
    SELECT subject, held_back, held_back_by_reason, run_id FROM investment.run_quality
    WHERE job = 'monthly_distribution' AND held_back > 0 AND subject BETWEEN %(first_period)s AND %(last_period)s
    ORDER BY subject
"""


def data_quality(conn: psycopg.Connection, f: Filters) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per business date: active, stored, missing and rejected accounts (with the reasons) and the
    Stripe reconciliation's differences; and the months with accounts held back, and why."""
    daily = _frame(conn, QUALITY, f.params(), ["date", "active", "stored", "missing", "rejected",
                                               "rejected_by_reason", "reconciliation_differences", "reconciled"])
    daily["rejected_by_reason"] = ["; ".join(f"{k}: {v}" for k, v in sorted(r.items())) for r in
                                   daily["rejected_by_reason"]]
    months = _frame(conn, HELD_MONTHS, f.params(), ["period", "held_back", "why", "run_id"])
    months["why"] = ["; ".join(f"{k}: {v}" for k, v in sorted(r.items())) for r in months["why"]]
    return daily, months


ACCOUNT = """
    SELECT a.id::text, a.user_id::text, p.name, p.currency, a.status, a.initial_investment, a.current_balance,
           a.total_return_percentage, a.total_profit_distributed, a.total_withdrawn, a.opened_at, a.closed_at
    FROM investment.accounts a JOIN investment.products p ON p.id = a.product_id WHERE a.id = %(account)s::uuid
"""
ACCOUNT_DAYS = """
    SELECT date, opening_balance, closing_balance, daily_return, daily_return_percentage, cumulative_return,
           cumulative_return_percentage FROM investment.daily_performance
    WHERE account_id = %(account)s::uuid AND date BETWEEN %(start)s AND %(end)s ORDER BY date
"""
ACCOUNT_DISTRIBUTIONS = """
    SELECT period, status, opening_balance, closing_balance, gross_profit, performance_fee_amount, net_profit,
           distributed_at FROM investment.distributions WHERE account_id = %(account)s::uuid ORDER BY period
"""
ACCOUNT_WITHDRAWALS = """
    SELECT id::text, created_at, amount, status, withdrawal_method, coalesce(rejection_reason, failure_message),
           payout_id, transfer_id, processed_at
    FROM investment.withdrawal_requests WHERE account_id = %(account)s::uuid ORDER BY created_at DESC LIMIT 200
"""
ACCOUNT_TRANSACTIONS = """
    SELECT created_at, type, amount, balance_before, balance_after, status, coalesce(distribution_period, '')
    FROM investment.transactions WHERE account_id = %(account)s::uuid ORDER BY created_at DESC LIMIT 200
"""


def account(conn: psycopg.Connection, account_id: str, f: Filters) -> dict[str, Any] | None:
    """One account: its facts, its daily series in the range, distributions, withdrawals, transactions."""
    import uuid

    try:
        uuid.UUID(account_id)
    except ValueError:
        return None
    params = {**f.params(), "account": account_id}
    row = conn.execute(ACCOUNT, params).fetchone()
    if row is None:
        return None
    facts = dict(zip(["account_id", "user_id", "product", "currency", "status", "initial_investment",
                      "current_balance", "total_return_percentage", "total_profit_distributed", "total_withdrawn",
                      "opened_at", "closed_at"], row, strict=True))
    return {
        "facts": facts,
        "days": _frame(conn, ACCOUNT_DAYS, params, ["date", "opening_balance", "closing_balance", "daily_return",
                                                    "daily_return_percentage", "cumulative_return",
                                                    "cumulative_return_percentage"]),
        "distributions": _frame(conn, ACCOUNT_DISTRIBUTIONS, params, ["period", "status", "opening_balance",
                                                                      "closing_balance", "gross_profit", "fee",
                                                                      "net_profit", "distributed_at"]),
        "withdrawals": _frame(conn, ACCOUNT_WITHDRAWALS, params, ["request_id", "created_at", "amount", "status",
                                                                  "method", "reason", "payout_id", "transfer_id",
                                                                  "processed_at"]),
        "transactions": _frame(conn, ACCOUNT_TRANSACTIONS, params, ["created_at", "type", "amount", "balance_before",
                                                                    "balance_after", "status", "period"]),
    }


def latest_business_date(conn: psycopg.Connection) -> date | None:
    row = conn.execute("SELECT max(date) FROM investment.book_daily").fetchone()
    return row[0] if row else None
