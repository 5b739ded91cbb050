"""Per-run staging tables, and the typed reference to a run that tasks hand each other instead of rows.

The tables are UNLOGGED, in schema ``investment_staging`` (created by migration 0001, nowhere else),
named after the job, the business date or period, and a hash of the run id, so reruns and
concurrent runs of other dates never collide. They live in the database (not on a worker's disk),
so the next task can run on any worker. Their names are composed with :mod:`psycopg.sql`, never
pasted into SQL text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from psycopg import sql

from investment_jobs.business_dates import Period
from investment_jobs.config import STAGING_SCHEMA

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class RunReference:
    """Which run, for which business date or period: what a run's first task resolves and every
    later task receives through XCom (as text there, typed here)."""

    job: str  # the job's short name: dp (daily_performance), md (monthly_distribution)
    run_id: str
    business_date: date | None = None
    period: Period | None = None

    def __post_init__(self) -> None:
        if (self.business_date is None) == (self.period is None):
            raise ValueError("a run reference has either a business date or a period")

    @property
    def key(self) -> str:
        """``YYYY-MM-DD`` or ``YYYY-MM``: for names and log lines."""
        return self.business_date.isoformat() if self.business_date else self.period.key  # type: ignore[union-attr]

    def to_xcom(self) -> dict[str, str]:
        out = {"job": self.job, "run_id": self.run_id}
        if self.business_date is not None:
            out["business_date"] = self.business_date.isoformat()
        else:
            out["period"] = self.key
        return out

    @classmethod
    def from_xcom(cls, value: dict[str, str]) -> RunReference:
        return cls(value["job"], value["run_id"],
                   business_date=date.fromisoformat(value["business_date"]) if "business_date" in value else None,
                   period=Period.parse(value["period"]) if "period" in value else None)


class Staging:
    """The staging tables of one run: one per role the job declares."""

    def __init__(self, ref: RunReference, roles: tuple[str, ...]) -> None:
        self.ref = ref
        self.roles = roles
        digest = hashlib.sha1(f"{ref.run_id}|{ref.key}".encode()).hexdigest()[:12]
        self._tag = f"{ref.key.replace('-', '')}_{digest}"

    @property
    def tag(self) -> str:
        """A short name unique to this run (for server-side cursor names)."""
        return self._tag

    def name(self, role: str) -> str:
        if role not in self.roles:
            raise KeyError(f"{role!r} is not a staging table of this job ({', '.join(self.roles)})")
        return f"{self.ref.job}_{role}_{self._tag}"

    def table(self, role: str) -> sql.Identifier:
        return sql.Identifier(STAGING_SCHEMA, self.name(role))

    def part(self, role: str, n: int) -> sql.Identifier:
        """Partition ``n`` of a partitioned role's table (dropped with it)."""
        return sql.Identifier(STAGING_SCHEMA, f"{self.name(role)}_{n}")

    def sql(self, statement: str, **fragments: sql.Composable) -> sql.Composed:
        """``statement`` with each ``{role}`` field bound to this run's table of that role, and any
        other field to one of the job's own SQL ``fragments`` (constants, never input)."""
        return sql.SQL(statement).format(**fragments, **{role: self.table(role) for role in self.roles})

    def execute(self, conn: psycopg.Connection, statement: str, params: Any = None,
                **fragments: sql.Composable) -> psycopg.Cursor:
        return conn.execute(self.sql(statement, **fragments), params)

    def count(self, conn: psycopg.Connection, role: str) -> int:
        return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.table(role))).fetchone()[0])

    def recreate(self, conn: psycopg.Connection, *statements: str, params: Any = None) -> None:
        """Start the run's tables afresh (a retried setup too): drop them all, then run ``statements``
        (the job's CREATE … statements, which may share ``params``), in one transaction."""
        with conn.transaction():
            for role in self.roles:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.table(role)))
            for statement in statements:
                self.execute(conn, statement, params)

    def drop(self, conn: psycopg.Connection) -> None:
        """Drop every table of the run (the teardown, and a setup that starts afresh)."""
        with conn.transaction():
            for role in self.roles:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.table(role)))
