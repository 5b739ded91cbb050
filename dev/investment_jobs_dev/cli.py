"""Embedded defaults for running the jobs on one machine: ``make migrate``, ``make job``, ``make demo``,
``make jobs-on`` / ``make jobs-off``.

Connections come from the environment (``AIRFLOW_CONN_INVESTMENT_DB``, ``AIRFLOW_CONN_ML_ENGINE``,
``AIRFLOW_CONN_STRIPE_DEFAULT``; URI or JSON) when set. Otherwise this module provides them: an
embedded PostgreSQL (pgserver) under ``.local/pg``, the ML engine stand-in on 127.0.0.1:8701 and
the Stripe stand-in on 127.0.0.1:12111, started on demand and stopped by whoever started them.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from investment_jobs import config
from investment_jobs.business_dates import last_complete_month, start_of_business_date
from investment_jobs_dev import LOCAL, say
from investment_jobs_dev.airflow_env import AIRFLOW, airflow, load_pools, use_checkout_env
from investment_jobs_dev.postgres import conn_json, embedded_postgres, stop_embedded
from investment_jobs_dev.processes import die_with_parent, run_forwarding_signals, stop_on_signals
from investment_jobs_dev.standins.launcher import ML_ENGINE, STRIPE, StandIn, answers

INVESTMENT_DBNAME = "investment"
ENGINE_PORT = int(os.environ.get("ML_ENGINE_STANDIN_PORT", "8701"))
STRIPE_PORT = int(os.environ.get("STRIPE_STANDIN_PORT", "12111"))
STANDIN_STRIPE_KEY = "sk_test_local_standin"  # only the local stand-in accepts it
DEMO_SEED = 7

# Exit statuses of `investment_jobs_dev.cli job` (make job's own status is 2 for any failure: GNU
# make's rule; the last line it prints says which of these it was).
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_SETUP_FAILED = 0, 1, 2, 3


# --- the connections: from the environment, or the embedded defaults ----------------------------
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


@contextlib.contextmanager
def _stand_in_unless_set(name: str, env_var: str, conn_value: str, stand_in: StandIn) -> Iterator[None]:
    """The connection from ``env_var`` when set; else ``stand_in``, reused when one already answers
    on its port, or started here (and stopped after)."""
    if os.environ.get(env_var):
        yield
        return
    os.environ[env_var] = conn_value
    if answers(f"{stand_in.url}/_admin/health"):
        say(f"using the {name} stand-in already running at {stand_in.url}")
        yield
        return
    try:
        stand_in.start()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    say(f"{name} stand-in at {stand_in.url}")
    try:
        yield
    finally:
        stand_in.stop()


@contextlib.contextmanager
def stand_ins(dsn: str) -> Iterator[None]:
    """The ML engine (serving the book in ``dsn``) and Stripe, from the env or as stand-ins."""
    engine = StandIn(ML_ENGINE, ENGINE_PORT, LOCAL / "standin-ml-engine.log", args=["--seed", str(DEMO_SEED)],
                     env={"ML_STANDIN_ACCOUNTS_DSN": dsn})  # the DSN stays off `ps`
    stripe = StandIn(STRIPE, STRIPE_PORT, LOCAL / "standin-stripe.log",
                     args=["--state-file", str(LOCAL / f"stripe-standin-{STRIPE_PORT}.json")],
                     env={"STRIPE_STANDIN_API_KEY": STANDIN_STRIPE_KEY})
    stripe_conn = json.dumps({"conn_type": "stripe", "host": stripe.url, "password": STANDIN_STRIPE_KEY})
    with _stand_in_unless_set("ML engine", "AIRFLOW_CONN_ML_ENGINE", engine.url, engine), \
            _stand_in_unless_set("Stripe", "AIRFLOW_CONN_STRIPE_DEFAULT", stripe_conn, stripe):
        yield


def migrate(dsn: str) -> None:
    import psycopg

    from investment_jobs.db.migrate import current_revision, upgrade

    upgrade(lambda: psycopg.connect(dsn))
    say(f"investment schema at revision {current_revision(lambda: psycopg.connect(dsn))}")


# --- make migrate --------------------------------------------------------------------------------
def cmd_migrate(_: argparse.Namespace) -> int:
    migrate(investment_dsn())
    return 0


# --- make job ------------------------------------------------------------------------------------
def job_logical_date(day: date, timezone: str) -> str:
    """The logical date that makes `airflow dags test` process business date ``day``: the start of
    the day in CRON_TIMEZONE (midnight UTC would be the evening before west of UTC)."""
    return start_of_business_date(day, timezone).isoformat()


@contextlib.contextmanager
def _one_job_at_a_time(home: Path, what: str) -> Iterator[None]:
    """`make job` runs share one Airflow home (its sqlite metadata, the stand-ins it starts): a
    second one waits for the first, saying so, instead of crashing on a locked database."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True)
    with (home / "make-job.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another make job"
            say(f"waiting: {holder} is using {home}; this run starts when it ends (Ctrl-C to give up)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} ({what})")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def migrate_airflow_once(home: Path) -> None:
    """`airflow db migrate` for this home's metadata, skipped when this Airflow version already did."""
    from importlib.metadata import version

    stamp = home / f".metadata-migrated-{version('apache-airflow')}"
    if stamp.exists() and not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return
    airflow("db", "migrate", quiet=True)
    stamp.touch()


def _dag_ids() -> list[str]:
    from investment_jobs_dev import ROOT

    return sorted(p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


def cmd_job(args: argparse.Namespace) -> int:
    dags = _dag_ids()
    if args.dag not in dags:
        print(f"error: unknown DAG id {args.dag!r}; one of: {', '.join(dags)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        day = date.fromisoformat(args.date)
        if len(args.date) != 10:  # fromisoformat also takes 20260105
            raise ValueError(args.date)
    except ValueError:
        print(f"error: DATE must be a date in YYYY-MM-DD form, got {args.date!r}", file=sys.stderr)
        return EXIT_USAGE
    die_with_parent()  # a killed make (even SIGKILL) stops this run
    stop_on_signals()
    # No scheduler watches a make job run, and `airflow dags test` cannot finish one with deadlines
    # (Airflow 3.3.2; config.deadline_alerts_enabled says why).
    os.environ["DEADLINE_ALERTS"] = "false"
    # Non-interactive: the person who runs make job approves the month (recorded as cli:<user>),
    # and the review figures are printed before it is distributed.
    os.environ["DISTRIBUTION_APPROVAL"] = f"cli:{getpass.getuser()}"
    # Nobody answers a Required Action in a make job run: held withdrawals and operator cases stay
    # as they are (the summary lists them) for a run of the deployment to ask about.
    os.environ["OPERATOR_DECISIONS"] = "skip"
    home = use_checkout_env(LOCAL / "job-airflow")
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
                status = run_forwarding_signals([AIRFLOW, "dags", "test", args.dag, logical])
    except KeyboardInterrupt:
        say(f"{args.dag} {day.isoformat()}: stopped")
        return 130
    say(f"{args.dag} {day.isoformat()}: {'success' if status == 0 else 'FAILED (exit status 1)'}")
    return EXIT_OK if status == 0 else EXIT_RUN_FAILED


# --- make jobs-on / jobs-off -------------------------------------------------------------------
def cmd_jobs(args: argparse.Namespace) -> int:
    """Turn all five jobs on (unpause) or off (pause): the original's JobManager start/stop.

    Acts on the Airflow of ``AIRFLOW_HOME`` when it is set (a deployment), otherwise on the demo's.
    """
    if not os.environ.get("AIRFLOW_HOME"):
        demo_airflow_env(use_checkout_env(LOCAL / "demo-airflow"))
    verb = "unpause" if args.state == "on" else "pause"
    failed = [dag_id for dag_id in config.SCHEDULES
              if airflow("dags", verb, dag_id, check=False, quiet=True).returncode]
    for dag_id in config.SCHEDULES:
        if dag_id not in failed:
            say(f"{dag_id}: {'on' if verb == 'unpause' else 'off'}")
    if failed:
        print(f"error: could not {verb} {', '.join(failed)} (has the DAG processor parsed them? "
              "`airflow dags list` shows what Airflow knows)", file=sys.stderr)
        return 1
    return 0


# --- make demo -------------------------------------------------------------------------------
def demo_airflow_env(home: Path) -> Path:
    """The demo's Airflow settings: metadata in the embedded PostgreSQL, local executor."""
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        meta = embedded_postgres().ensure_database("airflow_meta")
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = meta.replace("postgresql://", "postgresql+psycopg://", 1)
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    return home


def _unpause_when_parsed(dag_id: str, proc: subprocess.Popen, deadline: float) -> None:
    while airflow("dags", "unpause", dag_id, check=False, quiet=True).returncode:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{dag_id} was not parsed; see .local/demo-airflow.log")
        time.sleep(2)


def cmd_demo(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from investment_jobs_dev.book import main as seed_main

    stop_on_signals()
    today = datetime.now(UTC).date()  # clock-ok: the demo picks the last complete month to show
    month = last_complete_month(today)
    first, last = month.first_day, month.last_day
    backfill_from = max(first, last - timedelta(days=args.days - 1)) if args.days else first
    dsn = investment_dsn()
    migrate(dsn)
    seed_main(["--dsn", dsn, "--accounts", str(args.accounts), "--seed", str(DEMO_SEED),
               "--first-open", (first - timedelta(days=240)).isoformat(),
               "--last-open", (first + timedelta(days=10)).isoformat(), "--withdrawals", "40",
               "--connect-share", "0.3"])

    home = demo_airflow_env(use_checkout_env(LOCAL / "demo-airflow"))
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    os.environ.setdefault("AIRFLOW__API__PORT", str(args.port))
    # Tasks report to the API server's execution API, and alerts link to its UI: same port.
    os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{args.port}/execution/")
    os.environ.setdefault("AIRFLOW__API__BASE_URL", f"http://localhost:{args.port}/")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True")
    os.environ.setdefault("AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL", "10")
    # Large withdrawals (and first payouts to a destination) wait for a review in Required Actions.
    os.environ.setdefault("WITHDRAWAL_REVIEW_THRESHOLD", "usd=5000,eur=5000,jpy=700000,kwd=1500")
    # The demo's backfill should not crawl: retries are still on, with short waits.
    os.environ.setdefault("TASK_RETRY_DELAY_SECONDS", "10")
    airflow("db", "migrate", quiet=True)

    with stand_ins(dsn):
        connect_the_stripe_stand_in(dsn, f"http://localhost:{args.port}/stripe/webhooks")
        say(f"starting Airflow (scheduler, DAG processor, API server) at http://localhost:{args.port}")
        log = (LOCAL / "demo-airflow.log").open("a")
        proc = subprocess.Popen([AIRFLOW, "standalone"], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while not answers(f"http://127.0.0.1:{args.port}/api/v2/monitor/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Airflow did not start; see {LOCAL / 'demo-airflow.log'}")
                time.sleep(1)
            while airflow("dags", "list", "-o", "plain", check=False, quiet=True).stdout.count(
                    "daily_performance") == 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("daily_performance was not parsed; see .local/demo-airflow.log")
                time.sleep(2)
            load_pools()
            # The month listens before its days arrive: once the last of them is stored, the rollup
            # of the daily partitions runs monthly_distribution for it (no hand-made run).
            _unpause_when_parsed("monthly_distribution", proc, deadline)
            # The backfill first, then the schedule: unpaused first, the scheduler could create the
            # newest day's scheduled run before the backfill, which would then skip that day.
            say(f"backfilling daily_performance for {backfill_from} .. {last}")
            airflow("backfill", "create", "--dag-id", "daily_performance",
                    "--from-date", backfill_from.isoformat(), "--to-date", last.isoformat(),
                    "--reprocess-behavior", "failed", "--max-active-runs", "3", check=False, quiet=True)
            _unpause_when_parsed("daily_performance", proc, deadline)
            _unpause_when_parsed("withdrawal_processing", proc, deadline)
            _unpause_when_parsed("stripe_reconciliation", proc, deadline)
            say("withdrawal_processing is on: it pays the demo's approved requests through the Stripe stand-in")
            say(f"Airflow UI: http://localhost:{args.port}  login: admin / {demo_password(home)}")
            say("the backfill runs three business dates at a time; Ctrl-C stops everything")
            if backfill_from == first:
                say(f"when the last day of {month} is stored, monthly_distribution computes {month} and asks for "
                    "your approval: Browse → Required Actions (Approve credits it)")
            else:
                say(f"{month} stays pending (monthly_distribution: Pending Dag Run) until all its days are stored")
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


def connect_the_stripe_stand_in(dsn: str, webhook_url: str) -> None:
    """The stand-in knows the investors' connected accounts and delivers its events, signed, to the
    API server's webhook endpoint (connection ``stripe_webhook``); a real Stripe is left alone."""
    import secrets

    import psycopg

    from investment_jobs_dev.book import connected_accounts_in
    from investment_jobs_dev.standins.admin import StripeAdmin

    stand_in = f"http://127.0.0.1:{STRIPE_PORT}"
    if STANDIN_STRIPE_KEY not in os.environ.get("AIRFLOW_CONN_STRIPE_DEFAULT", ""):
        return
    with psycopg.connect(dsn) as conn:
        accounts = connected_accounts_in(conn)
    admin = StripeAdmin(stand_in)
    if accounts:
        admin.connected_accounts(*accounts)
    secret = json.dumps({"conn_type": "stripe", "password": f"whsec_demo_{secrets.token_hex(16)}"})
    os.environ.setdefault("AIRFLOW_CONN_STRIPE_WEBHOOK", secret)
    admin.webhooks(webhook_url, json.loads(os.environ["AIRFLOW_CONN_STRIPE_WEBHOOK"])["password"])
    say(f"Stripe stand-in: {len(accounts)} connected account(s); its events go to {webhook_url}")


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
        stop_embedded()


if __name__ == "__main__":
    raise SystemExit(main())
