"""A small book of accounts, in a test's own investment database and in the ML engine stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass
class Book:
    dsn: str
    accounts: list  # list[investment_jobs_dev.book.SeededAccount]

    def connect(self):  # noqa: ANN201
        import psycopg

        return psycopg.connect(self.dsn)

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def active_ids(self) -> list[str]:
        return [a.account_id for a in self.accounts if a.status == "active"]


def fill_days(book: Book | str, start: date, end: date, salt: str = "") -> None:
    """Store a daily row for every day each account is active in [start, end] (contracts.md's rule),
    with deterministic returns in [-9.00, 11.00], then chain cumulative_return as the daily job does."""
    import psycopg

    with (psycopg.connect(book) if isinstance(book, str) else book.connect()) as conn:
        if conn.execute("SELECT to_regprocedure('investment.ensure_daily_partitions(date, date)')").fetchone()[0]:
            conn.execute("SELECT investment.ensure_daily_partitions(%s, %s)", (start, end))  # by month (0012)
        conn.execute(
            """
            INSERT INTO investment.daily_performance (account_id, product_id, date, opening_balance,
                closing_balance, daily_return, daily_return_percentage, cumulative_return,
                cumulative_return_percentage, trades_executed, winning_trades, losing_trades)
            SELECT a.id, a.product_id, g.d::date, 10000, 10000 + r.ret, r.ret, r.ret / 100, 0, 0, 1, 1, 0
            FROM investment.accounts a
            CROSS JOIN generate_series(%(start)s::date, %(end)s::date, interval '1 day') g(d)
            CROSS JOIN LATERAL (SELECT ((abs(hashtext(a.id::text || g.d::text || %(salt)s)) %% 2001) - 900)::numeric
                                       / 100 AS ret) r
            WHERE a.status <> 'suspended' AND a.opened_at::date <= g.d
              AND (a.closed_at IS NULL OR a.closed_at::date > g.d)
            ON CONFLICT DO NOTHING
            """, {"start": start, "end": end, "salt": salt})
        rechain(conn)


def rechain(conn) -> None:  # noqa: ANN001
    conn.execute(
        """UPDATE investment.daily_performance t SET cumulative_return = c.cum
           FROM (SELECT account_id, date, sum(daily_return) OVER (PARTITION BY account_id ORDER BY date) cum
                 FROM investment.daily_performance) c
           WHERE t.account_id = c.account_id AND t.date = c.date""")
