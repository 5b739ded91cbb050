"""PostgreSQL for development and tests: the machine's server at 127.0.0.1:5432, else an embedded one."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from investment_jobs_dev import LOCAL, ROOT, say

PG_DIR = LOCAL / "pg"


@dataclass
class PgServer:
    """A PostgreSQL server reachable with trust auth as user postgres: TCP host or socket dir."""

    host: str
    port: int = 5432

    def dsn(self, dbname: str) -> str:
        if self.host.startswith("/"):
            return f"postgresql://postgres@/{dbname}?host={self.host}&port={self.port}"
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def admin(self):  # noqa: ANN201 - a psycopg connection in autocommit
        import psycopg

        return psycopg.connect(self.dsn("postgres"), autocommit=True)

    def fresh_database(self, dbname: str, template: str | None = None) -> str:
        with self.admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
            if template:
                create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
            admin.execute(create)
        return self.dsn(dbname)

    def ensure_database(self, dbname: str) -> str:
        with self.admin() as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.dsn(dbname)

    def drop_database(self, dbname: str) -> None:
        with self.admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


# The embedded server and pgserver's handle to it (the server stops when every handle is cleaned up).
_embedded: tuple[PgServer, object] | None = None


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops its server when the last process holding a handle lets go, and lists those
    processes in .handle_pids.json; a process that was killed stays listed, and the server would
    then never stop. Drop the ones that are gone."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pids = json.loads(handles.read_text())
        handles.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


def embedded_postgres() -> PgServer:
    """The embedded server under .local/pg, started on first use; :func:`stop_embedded` lets go of it."""
    global _embedded
    if _embedded is None:
        import pgserver

        PG_DIR.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(PG_DIR)
        say(f"starting the embedded PostgreSQL in {PG_DIR.relative_to(ROOT)}")
        _embedded = (PgServer(str(PG_DIR)), pgserver.get_server(PG_DIR, cleanup_mode="stop"))
    return _embedded[0]


def stop_embedded() -> None:
    global _embedded
    if _embedded is not None:
        say("stopping the embedded PostgreSQL")
        _embedded[1].cleanup()
        _embedded = None


def local_or_embedded_postgres(embedded_dir: Path) -> PgServer:
    """127.0.0.1:5432 when it answers (this machine kind and CI run one), else pgserver."""
    import psycopg

    local = PgServer("127.0.0.1")
    try:
        with psycopg.connect(local.dsn("postgres"), connect_timeout=3):
            return local
    except psycopg.OperationalError:
        import pgserver

        embedded_dir.mkdir(parents=True, exist_ok=True)
        pgserver.get_server(embedded_dir, cleanup_mode=None)
        return PgServer(str(embedded_dir))


def conn_json(socket_dir: Path, dbname: str) -> str:
    """The investment_db connection (JSON form) for a database of a socket-dir server."""
    return json.dumps({"conn_type": "postgres", "host": str(socket_dir), "login": "postgres",
                       "schema": dbname, "port": 5432})
