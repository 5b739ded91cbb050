"""Apply the package's Alembic migrations: ``python -m investment_jobs.db.migrate`` (make migrate).

Idempotent: at head it does nothing. The target is the ``investment_db`` connection, or a libpq
DSN given with ``--dsn`` (tests).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(connect: Callable[[], object], revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, pool

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine("postgresql+psycopg://", creator=connect, poolclass=pool.NullPool)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current_revision(connect: Callable[[], object]) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine("postgresql+psycopg://", creator=connect, poolclass=pool.NullPool)
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table_schema": "investment"}
                                          ).get_current_revision()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", help="libpq DSN; default: the investment_db Airflow connection")
    parser.add_argument("--revision", default="head")
    args = parser.parse_args(argv)
    if args.dsn:
        import psycopg

        def connect() -> object:
            return psycopg.connect(args.dsn)
    else:
        from investment_jobs.db.connect import connect  # type: ignore[assignment]
    upgrade(connect, args.revision)
    print(f"investment schema at revision {current_revision(connect)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
