"""Shared fixtures: a private Airflow home, real PostgreSQL, and the stand-in servers over HTTP.

Airflow reads its settings when first imported, so the environment is set here, before any test
module imports it. PostgreSQL is the server at 127.0.0.1:5432 when it answers, otherwise an
embedded one (pgserver) under .local/; each test gets its own database, cloned from a migrated
template.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from investment_jobs.devenv import PgServer, local_or_embedded_postgres

ROOT = Path(__file__).resolve().parents[1]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
AIRFLOW_HOME = ROOT / ".local" / "test-airflow" / WORKER

os.environ.update({
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    # Tests must not wait minutes for backoff: the same retries, with tiny delays.
    "TASK_RETRIES": "1",
    "TASK_RETRY_DELAY_SECONDS": "0",
    "ML_ENGINE_HTTP_ATTEMPTS": "4",
    "ML_ENGINE_HTTP_INITIAL_WAIT": "0.01",
    "ML_ENGINE_HTTP_MAX_WAIT": "0.05",
    "ML_ENGINE_HTTP_TIMEOUT": "5",
    "ML_ENGINE_PAGE_SIZE": "7",  # several pages even for a small book
    "CRON_TIMEZONE": "UTC",
    "STRIPE_HTTP_TIMEOUT": "2",
    "STRIPE_NETWORK_RETRIES": "1",
    "STRIPE_RATE_LIMIT_ATTEMPTS": "2",
})
for name in ("ENABLE_CRON_JOBS", "DAILY_REJECT_TOLERANCE", "AIRFLOW_CONN_INVESTMENT_DB",
             "AIRFLOW_CONN_ML_ENGINE", "AIRFLOW_CONN_STRIPE_DEFAULT", "DAILY_PERFORMANCE_CRON"):
    os.environ.pop(name, None)

PYTHON = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Airflow metadata ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated Airflow metadata database (sqlite in the private home) for dag.test()."""
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(PYTHON).parent / "airflow"), "db", "migrate"], check=True,
                   capture_output=True, env=os.environ.copy(), timeout=300)


# --- PostgreSQL ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """127.0.0.1:5432 when it answers, else an embedded PostgreSQL (pgserver) under .local/."""
    return local_or_embedded_postgres(ROOT / ".local" / "pgtest")


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """A database migrated once per session; each test clones it."""
    import psycopg
    from investment_jobs.db.migrate import upgrade

    name = f"ij_template_{WORKER}"
    dsn = pg_server.fresh_database(name)
    upgrade(lambda: psycopg.connect(dsn))
    return name


_db_counter = itertools.count()


@pytest.fixture
def investment_db(pg_server: PgServer, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated investment database for one test; ``investment_db`` points at it."""
    name = f"ij_{WORKER}_{os.getpid()}_{next(_db_counter)}"
    dsn = pg_server.fresh_database(name, template=template_db)
    monkeypatch.setenv("AIRFLOW_CONN_INVESTMENT_DB", dsn)
    yield dsn
    pg_server.drop_database(name)


# --- ML engine stand-in ----------------------------------------------------------------------
@dataclass
class EngineStandIn:
    url: str

    def _call(self, method: str, path: str, body: object | None = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def reset(self) -> None:
        self._call("POST", "/_admin/reset")

    def register(self, accounts: list[dict]) -> None:
        self._call("POST", "/_admin/accounts", accounts)

    def faults(self, **faults: object) -> None:
        self._call("POST", "/_admin/faults", faults)

    def stats(self) -> dict:
        return self._call("GET", "/_admin/stats")  # type: ignore[return-value]


def _start_server(module: str, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([PYTHON, "-m", module, "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_admin/health", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{module} did not start on port {port}")


def _serve(module: str, name: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A stand-in server for the session, on a free port; yields its base URL."""
    port = _free_port()
    log = ROOT / ".local" / f"standin-{name}-{WORKER}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = _start_server(module, port, log, env)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def engine_server() -> Iterator[EngineStandIn]:
    for url in _serve("investment_jobs.ml_engine.standin", "ml"):
        yield EngineStandIn(url)


@pytest.fixture
def engine(engine_server: EngineStandIn, monkeypatch: pytest.MonkeyPatch) -> EngineStandIn:
    engine_server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_ML_ENGINE", engine_server.url)
    return engine_server


# --- Stripe stand-in -------------------------------------------------------------------------
STRIPE_TEST_KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"


@dataclass
class StripeStandIn(EngineStandIn):
    """The Stripe stand-in's admin surface (same JSON-over-HTTP shape as the engine's)."""

    def payouts(self) -> list[dict]:
        return self._call("GET", "/_admin/payouts")  # type: ignore[return-value]

    def set_payout(self, payout_id: str, **fields: object) -> dict:
        return self._call("POST", f"/_admin/payouts/{payout_id}", fields)  # type: ignore[return-value]

    def balance(self, **per_currency: int) -> None:
        self._call("POST", "/_admin/balance", per_currency)

    def forget_keys(self) -> None:
        self._call("POST", "/_admin/forget_keys", {})

    def stats(self) -> dict:
        return self._call("GET", "/_admin/stats")  # type: ignore[return-value]


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeStandIn]:
    for url in _serve("investment_jobs.stripe.standin", "stripe", {"STRIPE_STANDIN_API_KEY": STRIPE_TEST_KEY}):
        yield StripeStandIn(url)


@pytest.fixture
def stripe_standin(stripe_server: StripeStandIn, monkeypatch: pytest.MonkeyPatch) -> StripeStandIn:
    """A reset Stripe stand-in that ``stripe_default`` points at."""
    stripe_server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(
        {"conn_type": "stripe", "host": stripe_server.url, "password": STRIPE_TEST_KEY}))
    return stripe_server


# --- a small book, in the database and the engine -------------------------------------------
@dataclass
class Book:
    dsn: str
    accounts: list  # list[SeededAccount]

    def connect(self):  # noqa: ANN201
        import psycopg

        return psycopg.connect(self.dsn)

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def active_ids(self) -> list[str]:
        return [a.account_id for a in self.accounts if a.status == "active"]


@pytest.fixture
def book(investment_db: str, engine: EngineStandIn) -> Book:
    """30 accounts opened in 2025 (a few suspended or closed), known to the DB and the engine."""
    import psycopg
    from investment_jobs.demo.seed import engine_registration, plan_book, seed_book

    accounts = plan_book(30, seed=11, first_open=date(2025, 1, 1), last_open=date(2025, 11, 30),
                         suspended_share=0.1, closed_share=0.1)
    with psycopg.connect(investment_db) as conn:
        seed_book(conn, accounts, seed=11)
    engine.register(engine_registration(accounts))
    return Book(investment_db, accounts)


# --- running DAGs ----------------------------------------------------------------------------
_dags: dict = {}


def load_dag(dag_id: str):  # noqa: ANN201
    """The DAG object parsed from its file in dags/ (once per session), as the scheduler would."""
    if dag_id not in _dags:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
        assert not bag.import_errors, bag.import_errors
        _dags[dag_id] = bag.get_dag(dag_id)
    return _dags[dag_id]


def run_dag(dag_id: str, day: date | datetime, conf: dict | None = None):  # noqa: ANN201
    """dag.test() for one business date (or an exact logical date); returns the DagRun."""
    dag = load_dag(dag_id)
    logical = day if isinstance(day, datetime) else datetime(day.year, day.month, day.day, tzinfo=UTC)
    return dag.test(logical_date=logical, run_conf=conf)


def task_states(dag_run) -> dict[str, str]:  # noqa: ANN001
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}


def xcom(dag_run, task_id: str):  # noqa: ANN001, ANN201
    """The return value a task pushed in this run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
                                    XComModel.task_id == task_id, XComModel.key == "return_value")
        ).scalar_one_or_none()
        return None if row is None else XComModel.deserialize_value(row)


# --- a webhook receiver (Slack's incoming webhook, for the failure notifier) ------------------
@pytest.fixture
def webhook():  # noqa: ANN201
    """A local HTTP server standing in for Slack's incoming webhook; yields (url, received bodies)."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX", received
    server.shutdown()
    server.server_close()
