"""Per-run staging tables: what one task hands the next instead of rows.

UNLOGGED tables in schema ``investment_staging``, named after the job, the business date or
period, and a hash of the run id, so reruns and concurrent runs of other dates never collide.
They live in the database (not on a worker's disk), so the next task can run on any worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from investment_jobs.config import STAGING_SCHEMA


@dataclass(frozen=True)
class Staging:
    prefix: str  # the job's short name: dp (daily performance), md (monthly distribution)
    key: str  # business date (YYYY-MM-DD) or period (YYYY-MM)
    run_id: str
    tag: str

    @classmethod
    def for_run(cls, prefix: str, key: str, run_id: str) -> Staging:
        digest = hashlib.sha1(f"{run_id}|{key}".encode()).hexdigest()[:12]
        return cls(prefix, key, run_id, f"{key.replace('-', '')}_{digest}")

    def table(self, role: str) -> str:
        return f"{STAGING_SCHEMA}.{self.prefix}_{role}_{self.tag}"

    def fill(self, query: str, roles: tuple[str, ...]) -> str:
        """Put this run's table names into a query's {role} fields (generated names, not input)."""
        return query.format(**{role: self.table(role) for role in roles})

    def drop(self, conn, roles: tuple[str, ...]) -> None:  # noqa: ANN001 - a psycopg connection
        with conn.transaction():
            for role in roles:
                conn.execute(f"DROP TABLE IF EXISTS {self.table(role)}")

    def to_xcom(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: dict[str, str]) -> Staging:
        return cls(**value)
