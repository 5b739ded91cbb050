"""The soak's own PostgreSQL cluster: ``initdb`` in a temporary folder with the PostgreSQL that the
``pgserver`` wheel carries, on its own port, so the soak can restart it and end its sessions
without touching the machine's shared server (the guide forbids restarting that one).

The jobs connect as ``soak_jobs`` with a password over TCP (scram-sha-256), so the secrets check at
the end has a real database password to look for; the soak itself and Airflow's metadata connect
as ``postgres`` (trust, loopback only).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from investment_jobs_dev.standins.launcher import free_port

JOBS_ROLE = "soak_jobs"


@dataclass
class OwnPostgres:
    """One cluster in ``root`` (created when None), started by :meth:`start`, removed by :meth:`destroy`."""

    root: Path | None = None
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: "pw_" + secrets.token_urlsafe(18))
    settings: dict[str, str] = field(default_factory=dict)  # postgresql.conf lines (a benchmark's sizing)
    _system_user: str | None = None

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    @property
    def admin_url(self) -> str:
        """The server without a database, as the stack's ``postgres`` setting takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def dsn(self, dbname: str) -> str:
        return f"{self.admin_url}/{dbname}"

    def jobs_dsn(self, dbname: str) -> str:
        return f"postgresql://{JOBS_ROLE}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    # --- the cluster's life --------------------------------------------------------------------
    def _run(self, tool: str, args: list[str]) -> str:
        from pgserver import _commands

        kwargs = {"user": self._system_user} if self._system_user else {}
        return getattr(_commands, tool)(args, pgdata=self.data, timeout=120, **kwargs)

    def start(self) -> OwnPostgres:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ij-soak-pg-"))  # short: the socket path has a limit
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: pgserver's own unprivileged user
            import pwd

            from pgserver._commands import POSTGRES_BIN_PATH
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self._system_user = "pgserver"
            ensure_user_exists(self._system_user)
            ensure_prefix_permissions(self.data)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            entry = pwd.getpwnam(self._system_user)
            for path in (self.root, self.data):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", ["-U", "postgres", "--auth=trust", "--encoding=utf8"])
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
            f"host all {JOBS_ROLE} 127.0.0.1/32 scram-sha-256\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 300\n"
                       "password_encryption = 'scram-sha-256'\n")
            conf.writelines(f"{name} = '{value}'\n" for name, value in self.settings.items())
        if self._system_user:
            import pwd

            entry = pwd.getpwnam(self._system_user)
            for name in ("pg_hba.conf", "postgresql.conf"):
                os.chown(self.data / name, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        self._pg_ctl_start()
        with self.admin() as admin:
            admin.execute(f"CREATE ROLE {JOBS_ROLE} LOGIN PASSWORD %s".replace("%s", _literal(self.password)))
        return self

    def _pg_ctl_start(self) -> None:
        self._run("pg_ctl", ["-w", "-l", str(self.log), "start"])

    def admin(self, dbname: str = "postgres"):  # noqa: ANN201 - a psycopg connection in autocommit
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10)

    def create_database(self, name: str, owner: str = "postgres") -> None:
        with self.admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" OWNER {owner}')

    def restart_fast(self, down_seconds: float = 3) -> None:  # float-ok: seconds
        """A fast shutdown (every session is cut, in-flight transactions roll back), down a while, up."""
        self._run("pg_ctl", ["-w", "-m", "fast", "stop"])
        time.sleep(down_seconds)
        self._pg_ctl_start()

    def busy_sessions(self, role: str = JOBS_ROLE) -> int:
        """Sessions of ``role`` running a statement or inside a transaction right now."""
        with self.admin() as admin:
            return admin.execute(
                """SELECT count(*) FROM pg_stat_activity WHERE usename = %s
                   AND state IN ('active', 'idle in transaction')""", (role,)).fetchone()[0]

    def terminate_sessions(self, role: str = JOBS_ROLE) -> int:
        """``pg_terminate_backend`` on every session of ``role``; how many were ended."""
        with self.admin() as admin:
            return len(admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                (role,)).fetchall())

    def dump(self, dbname: str) -> str:
        """The database as SQL text (the secrets check reads it)."""
        import subprocess

        from pgserver._commands import POSTGRES_BIN_PATH

        return subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "--data-only", dbname],
                              check=True, capture_output=True, text=True, timeout=600).stdout

    def destroy(self) -> None:
        if self.root is None:
            return
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):  # removing the folder is what matters now
                self._run("pg_ctl", ["-w", "-m", "immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
