"""Airflow as it runs beyond one machine, here: PostgreSQL metadata, CeleryExecutor on Redis, and a
scheduler, a DAG processor, an API server and Celery workers, each its own process.

``make stack`` runs it with the demo's book (``python -m investment_jobs_dev.stack``); the end-to-end
test and ``make bench`` start it on their own databases and ports. It uses PostgreSQL at
127.0.0.1:5432 and Redis at 127.0.0.1:6379 (``STACK_POSTGRES``, ``STACK_REDIS`` to change) and
says what is missing when they do not answer. docs/deploy.md explains the settings.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from investment_jobs_dev import LOCAL, say
from investment_jobs_dev.airflow_env import AIRFLOW, checkout_env, load_pools
from investment_jobs_dev.postgres import PgServer
from investment_jobs_dev.processes import die_with_parent
from investment_jobs_dev.standins.launcher import free_port

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379"


class StackUnavailable(RuntimeError):
    """A service the stack needs does not answer."""


def _answers_tcp(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def _redis_ping(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_answers(url: str | None = None) -> bool:
    """Redis (``STACK_REDIS``, default 127.0.0.1:6379) answers a PING."""
    return _redis_ping(url or os.environ.get("STACK_REDIS", DEFAULT_REDIS))


def flush_redis_db(db: int, url: str | None = None) -> None:
    """Empty one Redis database (a test's or a soak's Celery broker, before its stack starts)."""
    parts = urlsplit(url or os.environ.get("STACK_REDIS", DEFAULT_REDIS))
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=5) as s:
        s.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        s.recv(64)


def check_services(postgres: str, redis: str | None) -> None:
    missing = []
    if not _answers_tcp(postgres):
        missing.append(f"PostgreSQL at {postgres} (the metadata and investment databases)")
    if redis is not None and not _redis_ping(redis):
        missing.append(f"Redis at {redis} (Celery's broker)")
    if missing:
        raise StackUnavailable("the stack needs " + " and ".join(missing) + ", which do not answer")


@dataclass
class Stack:
    """One Airflow deployment on this machine. ``env`` holds every setting its processes share.

    ``executor="CeleryExecutor"`` (the default): Celery workers on Redis. ``"LocalExecutor"``: the
    scheduler runs the tasks itself, no Redis and no workers (the scheduler tests use it)."""

    home: Path
    metadata_db: str
    investment_dsn: str
    redis_db: int = 0
    executor: str = "CeleryExecutor"
    workers: int = 2
    worker_concurrency: int = 4
    port: int = field(default_factory=free_port)
    postgres: str = field(default_factory=lambda: os.environ.get("STACK_POSTGRES", DEFAULT_POSTGRES))
    redis: str = field(default_factory=lambda: os.environ.get("STACK_REDIS", DEFAULT_REDIS))
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_dsn(self) -> str:
        return f"{self.postgres}/{self.metadata_db}"

    @property
    def celery(self) -> bool:
        return self.executor == "CeleryExecutor"

    def env(self) -> dict[str, str]:
        home = self.home
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        secrets_file = home / ".stack-secrets"
        if not secrets_file.exists():
            home.mkdir(parents=True, exist_ok=True)
            secrets_file.write_text(f"{secrets.token_urlsafe(32)}\n{_fernet_key()}\n")
            secrets_file.chmod(0o600)
        jwt_secret, fernet = secrets_file.read_text().split()
        psycopg_meta = self.metadata_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        return checkout_env(home, base, **{
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": "32" if self.celery else "4",
            "AIRFLOW__CORE__FERNET_KEY": fernet,
            # Every process must agree on the secret that signs the tasks' execution-API tokens.
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": f"{self.url}/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": psycopg_meta,
            "AIRFLOW__CELERY__BROKER_URL": f"{self.redis}/{self.redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + psycopg_meta,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            # A worker that dies is noticed in seconds, not the default 5 minutes; its tasks retry.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW_CONN_INVESTMENT_DB": self.investment_dsn,
            **self.extra_env,
        })

    # --- processes ---------------------------------------------------------------------------
    def airflow(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:  # float-ok
        return subprocess.run([AIRFLOW, *args], env=self.env(), check=check,
                              capture_output=True, text=True, timeout=timeout)

    def load_pools(self) -> None:
        """The pools of airflow_settings.yaml, as every deployment of the package has them."""
        load_pools(self.env())

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = (self.home / f"{name}.log").open("a")
        # Its own session (stop() signals the group), and it dies with us: a killed test or
        # `make stack` never leaves an API server or a scheduler behind.
        self.procs[name] = subprocess.Popen([AIRFLOW, *args],
                                            env={**self.env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509

    def start(self) -> None:
        check_services(self.postgres, self.redis if self.celery else None)
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        self.load_pools()
        for name in self.COMMANDS:
            self.respawn(name)
        for i in range(1, (self.workers if self.celery else 0) + 1):
            self.start_worker(f"worker{i}")
        self.wait_ready()

    def token(self, username: str = "admin") -> str:
        """A JWT for the REST API, as the UI gets one (the simple auth manager's generated password)."""
        import json

        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        request = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                         data=json.dumps({"username": username,
                                                          "password": passwords[username]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def api(self, method: str, path: str, body: object | None = None, token: str | None = None
            ) -> tuple[int, object]:
        """One REST API call (``/api/v2/…``); returns (status, JSON body), errors included."""
        import json
        import urllib.error

        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token or self.token()}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def start_worker(self, name: str) -> None:
        # Each worker serves its task logs on its own port (8793 by default would clash).
        self._spawn(name, "celery", "worker", "--celery-hostname", f"{name}@%h",
                    env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})

    def wait_ready(self, timeout: float = 180) -> None:  # float-ok: seconds
        deadline = time.monotonic() + timeout
        while True:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"stack process(es) exited: {dead}; see {self.home}/<name>.log")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not answer; see {self.home}/api-server.log")
            time.sleep(1)
        while self.airflow("dags", "list-import-errors", check=False).returncode or \
                "daily_performance" not in self.airflow("dags", "list", "-o", "plain", check=False).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the DAG processor did not parse dags/; see {self.home}/dag-processor.log")
            time.sleep(2)

    COMMANDS = {"api-server": ("api-server",), "scheduler": ("scheduler",), "dag-processor": ("dag-processor",)}

    def respawn(self, name: str) -> None:
        """Start a process of the stack again under its name (a supervisor's restart)."""
        if name.startswith("worker"):
            self.start_worker(name)
        else:
            args = self.COMMANDS[name]
            self._spawn(name, *args, *(("--port", str(self.port)) if name == "api-server" else ()))

    def respawn_dead(self) -> list[str]:
        """Restart every process that exited, as systemd or Kubernetes would; their names."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self.procs.pop(name)
            self.respawn(name)
        return dead

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a worker and its task processes)."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def main(argv: list[str] | None = None) -> int:
    """`make stack`: the demo's book on the stack, until Ctrl-C."""
    import psycopg

    from investment_jobs_dev.book import main as seed_main
    from investment_jobs_dev.cli import DEMO_SEED, connect_the_stripe_stand_in, migrate, stand_ins
    from investment_jobs_dev.processes import stop_on_signals

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    postgres = os.environ.get("STACK_POSTGRES", DEFAULT_POSTGRES)
    try:
        check_services(postgres, os.environ.get("STACK_REDIS", DEFAULT_REDIS))
    except StackUnavailable as exc:
        print(f"error: {exc}. Start them (or point STACK_POSTGRES / STACK_REDIS at yours) and retry.",
              file=sys.stderr)
        return 2
    stop_on_signals()
    server = PgServer(urlsplit(postgres).hostname or "127.0.0.1", urlsplit(postgres).port or 5432)
    with server.admin() as admin:
        for name in ("airflow_stack", "investment_stack"):
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                admin.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn("investment_stack")
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        empty = not conn.execute("SELECT count(*) FROM investment.accounts").fetchone()[0]
    if empty:
        seed_main(["--dsn", dsn, "--accounts", "300", "--seed", str(DEMO_SEED), "--first-open", "2025-06-01",
                   "--last-open", "2025-12-01", "--withdrawals", "40"])
    stack = Stack(home=LOCAL / "stack-airflow", metadata_db="airflow_stack", investment_dsn=dsn, redis_db=0,
                  workers=args.workers, port=args.port)
    os.environ["AIRFLOW_CONN_INVESTMENT_DB"] = dsn
    with stand_ins(dsn):
        # The stand-in's signed events go to the stack's API server (its webhook secret is in the
        # environment every process of the stack starts with).
        connect_the_stripe_stand_in(dsn, f"{stack.url}/stripe/webhooks")
        try:
            say(f"starting the stack: API server on {stack.url}, scheduler, DAG processor, "
                f"{args.workers} Celery workers (Redis {stack.redis}/0), metadata in {postgres}/airflow_stack")
            stack.start()
            say(f"ready: {stack.url} (login admin; password in {stack.home}/simple_auth_manager_passwords.json."
                f"generated). DAGs start paused: `AIRFLOW_HOME={stack.home} make jobs-on` or the UI. Ctrl-C stops it")
            while all(p.poll() is None for p in stack.procs.values()):
                time.sleep(2)
            say("a stack process exited; stopping")
        except KeyboardInterrupt:
            say("stopping")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
