"""Embedded defaults for running the jobs on one machine: ``make migrate``, ``make job``, ``make demo``.

Connections come from the environment (``AIRFLOW_CONN_INVESTMENT_DB``, ``AIRFLOW_CONN_ML_ENGINE``,
``AIRFLOW_CONN_STRIPE_DEFAULT``; URI or JSON) when set. Otherwise this module provides them: an
embedded PostgreSQL (pgserver) under ``.local/pg``, the ML engine stand-in on 127.0.0.1:8701 and
the Stripe stand-in on 127.0.0.1:12111, started on demand and stopped by whoever started them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from investment_jobs import config

ROOT = Path(os.environ.get("INVESTMENT_JOBS_ROOT", Path(__file__).resolve().parents[2]))
LOCAL = ROOT / ".local"
PG_DIR = LOCAL / "pg"
INVESTMENT_DBNAME = "investment"
ENGINE_PORT = int(os.environ.get("ML_ENGINE_STANDIN_PORT", "8701"))
STRIPE_PORT = int(os.environ.get("STRIPE_STANDIN_PORT", "12111"))
STANDIN_STRIPE_KEY = "sk_test_local_standin"  # only the local stand-in accepts it
DEMO_SEED = 7


def say(message: str) -> None:
    print(f"[investment-jobs] {message}", flush=True)


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
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{dbname}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.dsn(dbname)

    def ensure_database(self, dbname: str) -> str:
        with self.admin() as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                admin.execute(f'CREATE DATABASE "{dbname}"')
        return self.dsn(dbname)

    def drop_database(self, dbname: str) -> None:
        with self.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


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
    global _embedded
    if _embedded is None:
        import pgserver

        PG_DIR.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(PG_DIR)
        say(f"starting the embedded PostgreSQL in {PG_DIR.relative_to(ROOT)}")
        _embedded = (PgServer(str(PG_DIR)), pgserver.get_server(PG_DIR, cleanup_mode="stop"))
    return _embedded[0]


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


def conn_json(dsn_socket_dir: Path, dbname: str) -> str:
    return json.dumps({"conn_type": "postgres", "host": str(dsn_socket_dir), "login": "postgres",
                       "schema": dbname, "port": 5432})


def investment_dsn() -> str:
    """A libpq DSN for the investment database: the env connection's, or the embedded default's."""
    if os.environ.get("AIRFLOW_CONN_INVESTMENT_DB"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn = PostgresHook(postgres_conn_id=config.INVESTMENT_DB_CONN_ID).get_connection(
            config.INVESTMENT_DB_CONN_ID)
        host, port = conn.host or "127.0.0.1", conn.port or 5432
        if host.startswith("/"):
            return f"postgresql://{conn.login or 'postgres'}@/{conn.schema}?host={host}&port={port}"
        auth = conn.login or "postgres"
        if conn.password:
            from urllib.parse import quote

            auth += ":" + quote(conn.password, safe="")
        return f"postgresql://{auth}@{host}:{port}/{conn.schema}"
    server = embedded_postgres()
    dsn = server.ensure_database(INVESTMENT_DBNAME)
    os.environ["AIRFLOW_CONN_INVESTMENT_DB"] = conn_json(Path(server.host), INVESTMENT_DBNAME)
    return dsn


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _standin(name: str, env_var: str, url: str, conn_value: str, argv: list[str],
             env: dict[str, str]) -> Iterator[str]:
    """A connection from ``env_var`` when set; else a stand-in at ``url``, reused when one already
    answers, or started here (and stopped after). Secrets go in its environment, never on ``ps``."""
    if os.environ.get(env_var):
        yield os.environ[env_var]
        return
    os.environ[env_var] = conn_value
    if _answers(f"{url}/_admin/health"):
        say(f"using the {name} stand-in already running at {url}")
        yield url
        return
    LOCAL.mkdir(exist_ok=True)
    log_path = LOCAL / f"standin-{name.replace(' ', '-').lower()}.log"
    proc = subprocess.Popen([sys.executable, *argv], env={**os.environ, **env}, stdout=log_path.open("a"),
                            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 30
    while not _answers(f"{url}/_admin/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the {name} stand-in did not start; see {log_path}")
        time.sleep(0.2)
    say(f"{name} stand-in at {url}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ml_engine(dsn: str) -> contextlib.AbstractContextManager[str]:
    """The ML engine connection: from the env, or a stand-in serving the book in ``dsn``."""
    url = f"http://127.0.0.1:{ENGINE_PORT}"
    return _standin("ML engine", "AIRFLOW_CONN_ML_ENGINE", url, url,
                    ["-m", "investment_jobs.ml_engine.standin", "--port", str(ENGINE_PORT), "--seed", str(DEMO_SEED)],
                    {"ML_STANDIN_ACCOUNTS_DSN": dsn})


def stripe_api() -> contextlib.AbstractContextManager[str]:
    """The Stripe connection: from the env, or the Stripe stand-in with a local test key."""
    url = f"http://127.0.0.1:{STRIPE_PORT}"
    conn = json.dumps({"conn_type": "stripe", "host": url, "password": STANDIN_STRIPE_KEY})
    return _standin("Stripe", "AIRFLOW_CONN_STRIPE_DEFAULT", url, conn,
                    ["-m", "investment_jobs.stripe.standin", "--port", str(STRIPE_PORT),
                     "--state-file", str(LOCAL / f"stripe-standin-{STRIPE_PORT}.json")],
                    {"STRIPE_STANDIN_API_KEY": STANDIN_STRIPE_KEY})


@contextlib.contextmanager
def stand_ins(dsn: str) -> Iterator[None]:
    with ml_engine(dsn), stripe_api():
        yield


def migrate(dsn: str) -> None:
    import psycopg

    from investment_jobs.db.migrate import current_revision, upgrade

    upgrade(lambda: psycopg.connect(dsn))
    say(f"investment schema at revision {current_revision(lambda: psycopg.connect(dsn))}")


def airflow_home(name: str) -> Path:
    """A project-local AIRFLOW_HOME whose settings point at this checkout."""
    home = LOCAL / name
    home.mkdir(parents=True, exist_ok=True)
    # Airflow starts some of its parts as `airflow ...` from PATH: make that this venv's.
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    return Path(os.environ["AIRFLOW_HOME"])


def airflow(*args: str, check: bool = True, quiet: bool = False) -> int:
    exe = str(Path(sys.executable).parent / "airflow")
    out = subprocess.DEVNULL if quiet else None
    result = subprocess.run([exe, *args], stdout=out, stderr=out)
    if check and result.returncode:
        raise SystemExit(f"`airflow {' '.join(args)}` failed with exit status {result.returncode}")
    return result.returncode


# --- commands --------------------------------------------------------------------------------
def cmd_migrate(_: argparse.Namespace) -> int:
    migrate(investment_dsn())
    return 0


# Exit statuses of `investment_jobs.devenv job` (make job's own status is 2 for any failure: GNU
# make's rule; the last line it prints says which of these it was).
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_SETUP_FAILED = 0, 1, 2, 3


def job_logical_date(day: date, timezone: str) -> str:
    """The logical date that makes `airflow dags test` process business date ``day``: the start of
    the day in CRON_TIMEZONE (midnight UTC would be the evening before west of UTC)."""
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time.min, tzinfo=ZoneInfo(timezone)).isoformat()


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent (make, a shell) dies, even by SIGKILL, so a killed
    `make job` never leaves a run behind."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.contextmanager
def _one_job_at_a_time(home: Path, what: str) -> Iterator[None]:
    """`make job` runs share one Airflow home (its sqlite metadata, the stand-ins it starts): a
    second one waits for the first, saying so, instead of crashing on a locked database."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    lock_path = home / "make-job.lock"
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another make job"
            say(f"waiting: {holder} is using {home.relative_to(ROOT) if home.is_relative_to(ROOT) else home}; "
                "this run starts when it ends (Ctrl-C to give up)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} ({what})")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def _run_forwarding_signals(argv: list[str]) -> int:
    """Run a child in our process group's stead: SIGTERM/SIGINT/SIGHUP to us reach it, and it dies
    with us (parent-death signal), so no `airflow dags test` outlives the `make job` that started it."""
    def in_child() -> None:
        _die_with_parent()

    proc = subprocess.Popen(argv, preexec_fn=in_child)
    forwarded: list[int] = []

    def forward(signum: int, frame: object) -> None:
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                status = proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if forwarded:
        raise KeyboardInterrupt
    return status


def migrate_airflow_once(home: Path) -> None:
    """`airflow db migrate` for this home's metadata, skipped when this Airflow version already did."""
    from importlib.metadata import version

    stamp = home / f".metadata-migrated-{version('apache-airflow')}"
    if stamp.exists() and not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return
    airflow("db", "migrate", quiet=True)
    stamp.touch()


def cmd_job(args: argparse.Namespace) -> int:
    dags = sorted(p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    if args.dag not in dags:
        print(f"error: unknown DAG id {args.dag!r}; one of: {', '.join(dags)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"error: DATE must be a date in YYYY-MM-DD form, got {args.date!r}", file=sys.stderr)
        return EXIT_USAGE
    if len(args.date) != 10:  # fromisoformat also takes 20260105
        print(f"error: DATE must be a date in YYYY-MM-DD form, got {args.date!r}", file=sys.stderr)
        return EXIT_USAGE
    _die_with_parent()
    _stop_on_signals()
    home = airflow_home("job-airflow")
    try:
        with _one_job_at_a_time(home, f"{args.dag} {day.isoformat()}"):
            try:
                dsn = investment_dsn()
                migrate(dsn)
                migrate_airflow_once(home)
            except (SystemExit, OSError, RuntimeError) as exc:
                print(f"error: could not prepare the run: {exc}", file=sys.stderr)
                return EXIT_SETUP_FAILED
            with stand_ins(dsn):
                logical = job_logical_date(day, config.cron_timezone())
                say(f"running {args.dag} for {day.isoformat()} in-process (airflow dags test, logical date {logical})")
                status = _run_forwarding_signals([str(Path(sys.executable).parent / "airflow"), "dags", "test",
                                                  args.dag, logical])
    except KeyboardInterrupt:
        say(f"{args.dag} {day.isoformat()}: stopped")
        return 130
    say(f"{args.dag} {day.isoformat()}: {'success' if status == 0 else 'FAILED (exit status 1)'}")
    return EXIT_OK if status == 0 else EXIT_RUN_FAILED


def cmd_jobs(args: argparse.Namespace) -> int:
    """Turn all five jobs on (unpause) or off (pause): the original's JobManager start/stop.

    Acts on the Airflow of ``AIRFLOW_HOME`` when it is set (a deployment), otherwise on the demo's.
    """
    if not os.environ.get("AIRFLOW_HOME"):
        demo_airflow_env(airflow_home("demo-airflow"))
    verb = "unpause" if args.state == "on" else "pause"
    failed = [dag_id for dag_id in config.SCHEDULES if airflow("dags", verb, dag_id, check=False, quiet=True)]
    for dag_id in config.SCHEDULES:
        if dag_id not in failed:
            say(f"{dag_id}: {'on' if verb == 'unpause' else 'off'}")
    if failed:
        print(f"error: could not {verb} {', '.join(failed)} (has the DAG processor parsed them? "
              "`airflow dags list` shows what Airflow knows)", file=sys.stderr)
        return 1
    return 0


def demo_airflow_env(home: Path) -> Path:
    """The demo's Airflow settings: metadata in the embedded PostgreSQL, local executor."""
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        meta = embedded_postgres().ensure_database("airflow_meta")
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = meta.replace("postgresql://", "postgresql+psycopg://", 1)
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    return home


def last_complete_month(today: date) -> tuple[date, date]:
    last_day = today.replace(day=1) - timedelta(days=1)
    return last_day.replace(day=1), last_day


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) both unwind through the cleanup below, even when the
    shell that started us left SIGINT ignored (as it does for background jobs)."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def cmd_demo(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    _stop_on_signals()
    from investment_jobs.demo.seed import main as seed_main

    today = datetime.now(UTC).date()  # clock-ok: the demo picks the last complete month to show
    first, last = last_complete_month(today)
    backfill_from = max(first, last - timedelta(days=args.days - 1)) if args.days else first
    dsn = investment_dsn()
    migrate(dsn)
    seed_main(["--dsn", dsn, "--accounts", str(args.accounts), "--seed", str(DEMO_SEED),
               "--first-open", (first - timedelta(days=240)).isoformat(),
               "--last-open", (first + timedelta(days=10)).isoformat(), "--withdrawals", "40"])

    home = demo_airflow_env(airflow_home("demo-airflow"))
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    os.environ.setdefault("AIRFLOW__API__PORT", str(args.port))
    # Tasks report to the API server's execution API, and alerts link to its UI: same port.
    os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{args.port}/execution/")
    os.environ.setdefault("AIRFLOW__API__BASE_URL", f"http://localhost:{args.port}/")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True")
    os.environ.setdefault("AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL", "10")
    # The demo's backfill should not crawl: retries are still on, with short waits.
    os.environ.setdefault("TASK_RETRY_DELAY_SECONDS", "10")
    airflow("db", "migrate", quiet=True)

    with stand_ins(dsn):
        say(f"starting Airflow (scheduler, DAG processor, API server) at http://localhost:{args.port}")
        log = (LOCAL / "demo-airflow.log").open("a")
        proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while not _answers(f"http://127.0.0.1:{args.port}/api/v2/monitor/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Airflow did not start; see {LOCAL / 'demo-airflow.log'}")
                time.sleep(1)
            while airflow("dags", "unpause", "daily_performance", check=False, quiet=True):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("daily_performance was not parsed; see .local/demo-airflow.log")
                time.sleep(2)
            load_pools()
            airflow("dags", "unpause", "withdrawal_processing", check=False, quiet=True)
            say("withdrawal_processing is on: it pays the demo's approved requests through the Stripe stand-in")
            say(f"backfilling daily_performance for {backfill_from} .. {last}")
            airflow("backfill", "create", "--dag-id", "daily_performance",
                    "--from-date", backfill_from.isoformat(), "--to-date", (last + timedelta(days=1)).isoformat(),
                    "--reprocess-behavior", "failed", "--max-active-runs", "3", check=False, quiet=True)
            say(f"Airflow UI: http://localhost:{args.port}  login: admin / {demo_password(home)}")
            say("the backfill runs three business dates at a time; Ctrl-C stops everything")
            proc.wait()
        except KeyboardInterrupt:
            say("stopping")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return 0


def settings_pools(settings: Path = ROOT / "airflow_settings.yaml") -> list[tuple[str, str, str]]:
    """(name, slots, description) of the pools in airflow_settings.yaml (the Astro CLI's file)."""
    import yaml

    pools = (yaml.safe_load(settings.read_text()).get("airflow") or {}).get("pools") or []
    return [(p["pool_name"], str(p["pool_slot"]), p.get("pool_description", "")) for p in pools]


def load_pools() -> list[str]:
    """The settings' pools in the demo's Airflow, so it runs as deployed."""
    for pool in settings_pools():
        airflow("pools", "set", *pool, quiet=True)
    return [name for name, _, _ in settings_pools()]


def demo_password(home: Path) -> str:
    generated = home / "simple_auth_manager_passwords.json.generated"
    for _ in range(30):
        if generated.exists():
            with contextlib.suppress(ValueError, KeyError):
                return json.loads(generated.read_text())["admin"]
        time.sleep(1)
    return f"(see {generated})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="investment-jobs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the schema migrations").set_defaults(func=cmd_migrate)
    job = sub.add_parser("job", help="run one DAG for one business date, in-process")
    job.add_argument("--dag", required=True)
    job.add_argument("--date", required=True)
    job.set_defaults(func=cmd_job)
    jobs = sub.add_parser("jobs", help="turn all five jobs on (unpause) or off (pause)")
    jobs.add_argument("state", choices=("on", "off"))
    jobs.set_defaults(func=cmd_jobs)
    demo = sub.add_parser("demo", help="seed a book, backfill a month, serve the Airflow UI")
    demo.add_argument("--accounts", type=int, default=300)
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--days", type=int, default=0,
                      help="backfill only the last N days of the last complete month (default: all of it)")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    finally:
        if _embedded is not None:
            say("stopping the embedded PostgreSQL")
            _embedded[1].cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
