"""Alembic environment: runs the package's migrations on the connection the caller passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

SCHEMA = "investment"


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    # The version table lives in the schema it versions, so create that schema first.
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(connection=connection, version_table_schema=SCHEMA)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `make migrate`")
run_migrations_online()
