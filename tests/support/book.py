"""A small book of accounts, in a test's own investment database and in the ML engine stand-in."""

from __future__ import annotations

from dataclasses import dataclass


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
