"""Fixtures: a private Airflow home, real PostgreSQL, and the stand-in servers over HTTP.

Airflow reads its settings when first imported, so the environment is set here, before any test
module imports it. PostgreSQL is the server at 127.0.0.1:5432 when it answers, otherwise an
embedded one (pgserver) under .local/; each test gets its own database, cloned from a migrated
template. Helpers the tests share live in tests/support, not here.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from investment_jobs_dev.airflow_env import AIRFLOW, checkout_env
from investment_jobs_dev.postgres import PgServer, local_or_embedded_postgres
from investment_jobs_dev.standins.admin import EngineAdmin, StripeAdmin
from investment_jobs_dev.standins.launcher import ML_ENGINE, STRIPE, StandIn, free_port
from tests.support.book import Book
from tests.support.paths import AIRFLOW_HOME, ROOT, STRIPE_TEST_KEY, WORKER

os.environ.update(checkout_env(AIRFLOW_HOME, **{
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
    # dag.test() cannot finish a DAG with deadlines (Airflow 3.3.2); the scheduler tests turn them on
    "DEADLINE_ALERTS": "false",
    # dag.test() cannot answer a Required Action: the month is approved automatically (and recorded
    # as such); the scheduler tests ask a person through the REST API and the UI
    "DISTRIBUTION_APPROVAL": "auto",
    "OPERATOR_DECISIONS": "skip",  # nor a held withdrawal or an operator case: left as they are
}))
for name in ("ENABLE_CRON_JOBS", "DAILY_REJECT_TOLERANCE", "AIRFLOW_CONN_INVESTMENT_DB",
             "AIRFLOW_CONN_ML_ENGINE", "AIRFLOW_CONN_STRIPE_DEFAULT", "DAILY_PERFORMANCE_CRON", "MONEY_APPROVERS",
             "WITHDRAWAL_REVIEW_THRESHOLD", "DISTRIBUTION_REVIEW_FEE_ALERT", "DISTRIBUTION_APPROVAL_TIMEOUT"):
    os.environ.pop(name, None)


# --- order -------------------------------------------------------------------------------------
# With `--dist loadfile` each file is one unit of work, handed to the workers in collection order:
# the files that drive a real scheduler go first, so the short ones fill in behind them instead of
# one long file starting last (the suite's wall time on CI's two cores).
SLOWEST_FIRST = ("tests/stack/test_soak.py", "tests/stack/test_partitions.py", "tests/stack/test_approvals.py",
                 "tests/stack/test_celery_stack.py", "tests/browser/test_airflow_ui.py",
                 "tests/browser/test_required_actions.py", "tests/integration/dev/test_make_job.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable within a file


# --- Airflow metadata ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated Airflow metadata database (sqlite in the private home) for dag.test()."""
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy(), timeout=300)


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


# --- the stand-ins ---------------------------------------------------------------------------
def _serve(module: str, name: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A stand-in server for the session, on a free port; yields its base URL."""
    with StandIn(module, free_port(), ROOT / ".local" / f"standin-{name}-{WORKER}.log", env=env) as stand_in:
        yield stand_in.url


@pytest.fixture(scope="session")
def engine_server() -> Iterator[EngineAdmin]:
    for url in _serve(ML_ENGINE, "ml"):
        yield EngineAdmin(url)


@pytest.fixture
def engine(engine_server: EngineAdmin, monkeypatch: pytest.MonkeyPatch) -> EngineAdmin:
    engine_server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_ML_ENGINE", engine_server.url)
    return engine_server


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeAdmin]:
    for url in _serve(STRIPE, "stripe", {"STRIPE_STANDIN_API_KEY": STRIPE_TEST_KEY}):
        yield StripeAdmin(url)


@pytest.fixture
def stripe_standin(stripe_server: StripeAdmin, monkeypatch: pytest.MonkeyPatch) -> StripeAdmin:
    """A reset Stripe stand-in that ``stripe_default`` points at."""
    stripe_server.reset()
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(
        {"conn_type": "stripe", "host": stripe_server.url, "password": STRIPE_TEST_KEY}))
    return stripe_server


# --- a small book, in the database and the engine -------------------------------------------
@pytest.fixture
def book(investment_db: str, engine: EngineAdmin) -> Book:
    """30 accounts opened in 2025 (a few suspended or closed), known to the DB and the engine."""
    import psycopg

    from investment_jobs_dev.book import engine_registration, plan_book, seed_book

    accounts = plan_book(30, seed=11, first_open=date(2025, 1, 1), last_open=date(2025, 11, 30),
                         suspended_share=0.1, closed_share=0.1)
    with psycopg.connect(investment_db) as conn:
        seed_book(conn, accounts, seed=11)
    engine.register(engine_registration(accounts))
    return Book(investment_db, accounts)


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
