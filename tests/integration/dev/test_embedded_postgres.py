"""The embedded PostgreSQL (pgserver) that tests, make job and make demo fall back to when no
server answers on 127.0.0.1:5432: it starts, takes the migrations, and Airflow's PostgresHook
reaches it through a socket-directory connection, as devenv configures it."""

from __future__ import annotations

import atexit
import json
from pathlib import Path

import psycopg
import pytest

from investment_jobs_dev.postgres import PgServer

pytestmark = pytest.mark.integration


def test_embedded_server_takes_the_schema_and_the_hook_reaches_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pgserver

    from investment_jobs.db.connect import connect
    from investment_jobs.db.migrate import current_revision, upgrade

    data_dir = tmp_path / "pg"
    data_dir.mkdir()
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        embedded = PgServer(str(data_dir))
        dsn = embedded.fresh_database("investment")
        upgrade(lambda: psycopg.connect(dsn))
        assert current_revision(lambda: psycopg.connect(dsn)) is not None
        monkeypatch.setenv("AIRFLOW_CONN_INVESTMENT_DB", json.dumps(
            {"conn_type": "postgres", "host": str(data_dir), "login": "postgres", "schema": "investment",
             "port": 5432}))
        with connect() as conn:
            tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_schema = 'investment'").fetchone()[0]
        assert tables >= 8
    finally:
        server.cleanup()
        # pgserver also cleans up at exit, logging to pytest's by-then closed capture stream.
        atexit.unregister(server._cleanup)
