"""``make soak``: operate a seeded book on a real deployment for simulated business days while a
seeded schedule of faults hits it, then check the invariants (:mod:`.invariants`) against records
the package does not write, and write the figures.

The deployment: its own PostgreSQL cluster (:mod:`.cluster`, never the machine's shared server),
the ML engine and Stripe stand-ins, and Airflow with CeleryExecutor on Redis (2 workers) or, when
Redis does not answer, LocalExecutor. Each simulated day D: new approved withdrawal requests
arrive; ``daily_performance`` is backfilled over every date not yet stored (several at once, its
failed dates again, as an operator does the next morning); two ``withdrawal_processing`` runs (the
half-days); ``ml_performance_sync`` for D and ``data_cleanup`` on Sundays; a month whose last day
is stored distributes itself (the partitions' rollup, approval ``auto``). The day's faults fire
while its runs work. After the last day the faults stop, and clean rounds (the failed dates again,
a withdrawal run, the banks answer) run until every invariant holds: at least two, counted as
"rounds to converge".

``python -m investment_jobs_dev.soak --days 60 --seed 1`` (``make soak``: ``SOAK_DAYS``, ``SOAK_SEED``;
``--profile short`` is the tour inside ``make test``). The figures go to ``RELIABILITY.md`` when
``--report`` names it, and always to ``<work>/soak-result.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from investment_jobs_dev import LOCAL, say
from investment_jobs_dev.processes import stop_on_signals
from investment_jobs_dev.soak import faults as F  # noqa: N812
from investment_jobs_dev.soak import invariants
from investment_jobs_dev.soak.cluster import OwnPostgres
from investment_jobs_dev.standins.admin import EngineAdmin, StripeAdmin
from investment_jobs_dev.standins.launcher import ML_ENGINE, STRIPE, StandIn, free_port

START = date(2026, 1, 1)
DAG_IDS = ("daily_performance", "monthly_distribution", "withdrawal_processing", "ml_performance_sync",
           "data_cleanup")
DAY_DEADLINE = 1800  # seconds for one simulated day's runs to end: generous, never a timing assertion
# Celery's broker database per profile (SOAK_REDIS_DB overrides): both, the load (10) and the Celery
# stack test (11) can run at once.
REDIS_DB = {"short": 13, "long": 14}

# A failed run must end with a message the README documents (its "What a failed … run means"
# tables, and "Under faults" for what the deployment itself can do to a run).
DOCUMENTED_FAILURES = {
    "daily_performance": (r"has not ended yet", r"engine item\(s\) rejected", r"HTTP (429|5\d\d)",
                          r"ConnectionError|ConnectTimeout|ReadTimeout|timed out", r"bulk listing:"),
    "monthly_distribution": (r"has not ended yet", r"held back", r"no longer match", r"were not written",
                             r"are not the ones approved"),
    "withdrawal_processing": (r"got an ambiguous answer", r"step\(s\) \w+ failed", r"need an operator",
                              r"Stripe refused the API key"),
    "ml_performance_sync": (r"engine item\(s\) rejected", r"HTTP (429|5\d\d)",
                            r"ConnectionError|ConnectTimeout|ReadTimeout|timed out"),
}
DEPLOYMENT_FAILURES = (r"terminating connection|server closed the connection|connection .* failed|"
                       r"the database system is (shutting down|starting up|in recovery)|consuming input failed|"
                       r"connection is (lost|closed)|SSL SYSCALL|Connection refused",
                       r"heartbeat|zombie|killed|externally|SIGKILL|-9")


def payable_accounts(conn) -> list[tuple]:  # noqa: ANN001 - a psycopg connection
    """(id, user id, balance, currency) of the active accounts with something to withdraw."""
    return conn.execute(
        """SELECT a.id, a.user_id, a.current_balance, p.currency FROM investment.accounts a
           JOIN investment.products p ON p.id = a.product_id
           WHERE a.status = 'active' AND a.current_balance > 100 ORDER BY a.id""").fetchall()


@dataclass(frozen=True)
class Profile:
    name: str
    days: int
    accounts: int
    requests_per_day: int
    fault_rate: float  # float-ok: further faults per simulated day, beyond one of every kind
    dates_per_backfill: int


PROFILES = {
    "short": Profile("short", days=3, accounts=24, requests_per_day=3, fault_rate=0, dates_per_backfill=2),
    "long": Profile("long", days=60, accounts=120, requests_per_day=6, fault_rate=1.5, dates_per_backfill=3),
}


@dataclass
class Figures:
    profile: str
    seed: int
    executor: str
    simulated_days: int
    first_date: str
    last_date: str
    commit: str = ""  # the code the figures are of (with "+" when the checkout had changes)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    faults_injected: int = 0
    processes_restarted_by_supervisor: int = 0
    invariant_checks: int = 0
    items_checked: int = 0
    violations: list[str] = field(default_factory=list)
    rounds_to_converge: int = 0
    failed_runs: list[dict] = field(default_factory=list)
    secret_hits: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0  # float-ok: seconds
    payouts: int = 0
    distributions: int = 0
    daily_rows: int = 0


class Soak:
    def __init__(self, profile: Profile, seed: int, work: Path, redis_db: int | None = None) -> None:
        self.profile, self.seed, self.work = profile, seed, work
        self.redis_db = redis_db or int(os.environ.get("SOAK_REDIS_DB", "0")) or REDIS_DB[profile.name]
        self.rng = random.Random(seed)
        self.dates = [START + timedelta(days=i) for i in range(profile.days)]
        self.pg = OwnPostgres()
        self.stripe_key = "sk_test_soak_" + secrets.token_hex(12)
        self.webhook_secret = "whsec_soak_" + secrets.token_hex(16)
        self.engine = StandIn(ML_ENGINE, free_port(), work / "standin-ml-engine.log", args=["--seed", str(seed)])
        self.stripe = StandIn(STRIPE, free_port(), work / "standin-stripe.log")
        self.stack = None
        self.fault_log = F.FaultLog(work / "faults.jsonl")
        self.figures = Figures(profile.name, seed, "", profile.days, self.dates[0].isoformat(),
                               self.dates[-1].isoformat())
        self.malformed_dates: set[date] = set()
        self.triggered: dict[str, int] = {}
        self.extra_env: dict[str, str] = {}  # settings a variant of the soak deploys with (the load's)

    # --- setting up ----------------------------------------------------------------------------
    def start(self) -> None:
        from investment_jobs_dev.book import main as seed_main
        from investment_jobs_dev.stack import Stack, flush_redis_db, redis_answers

        self.work.mkdir(parents=True, exist_ok=True)
        self.pg.start()
        say(f"soak: own PostgreSQL on 127.0.0.1:{self.pg.port} ({self.pg.root})")
        self.pg.create_database("investment", owner="soak_jobs")
        self.pg.create_database("airflow_meta")
        dsn = self.pg.jobs_dsn("investment")
        import psycopg

        from investment_jobs.db.migrate import upgrade

        upgrade(lambda: psycopg.connect(dsn))
        seed_main(["--dsn", dsn, "--accounts", str(self.profile.accounts), "--seed", str(self.seed),
                   "--first-open", (START - timedelta(days=200)).isoformat(),
                   "--last-open", (START - timedelta(days=5)).isoformat()])
        self.engine.env = {"ML_STANDIN_ACCOUNTS_DSN": dsn}
        self.stripe.env = {"STRIPE_STANDIN_API_KEY": self.stripe_key}
        self.engine.start()
        self.stripe.start()
        celery = redis_answers()
        if celery:
            flush_redis_db(self.redis_db)
        self.figures.executor = "CeleryExecutor" if celery else "LocalExecutor"
        self.stack = Stack(
            home=self.work / "airflow", metadata_db="airflow_meta", investment_dsn=dsn, postgres=self.pg.admin_url,
            redis_db=self.redis_db, executor=self.figures.executor, workers=2,
            extra_env={
                "AIRFLOW_CONN_ML_ENGINE": self.engine.url,
                "AIRFLOW_CONN_STRIPE_DEFAULT": json.dumps({"conn_type": "stripe", "host": self.stripe.url,
                                                           "password": self.stripe_key}),
                "AIRFLOW_CONN_STRIPE_WEBHOOK": json.dumps({"conn_type": "stripe", "password": self.webhook_secret}),
                "ENABLE_CRON_JOBS": "false", "CRON_TIMEZONE": "UTC",
                "TASK_RETRIES": "4", "TASK_RETRY_DELAY_SECONDS": "3", "TASK_MAX_RETRY_DELAY_SECONDS": "20",
                "DISTRIBUTION_APPROVAL": "auto", "OPERATOR_DECISIONS": "skip", "DEADLINE_ALERTS": "false",
                "ML_ENGINE_PAGE_SIZE": "10", "ML_ENGINE_HTTP_TIMEOUT": "5", "STRIPE_HTTP_TIMEOUT": "5",
                "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "4",
                **self.extra_env,
            })
        say(f"soak: starting Airflow ({self.figures.executor}) on {self.stack.url}")
        self.stack.start()
        for dag_id in DAG_IDS:
            self.stack.airflow("dags", "unpause", dag_id)
        StripeAdmin(self.stripe.url).webhooks(f"{self.stack.url}/stripe/webhooks", self.webhook_secret)

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        self.engine.stop()
        self.stripe.stop()
        self.pg.destroy()

    # --- the workload --------------------------------------------------------------------------
    def add_requests(self, day: date) -> None:
        """The platform approves a few withdrawals a day: about 1% of a balance, in minor units."""
        import psycopg

        with psycopg.connect(self.pg.dsn("investment")) as conn:
            accounts = payable_accounts(conn)
            for account_id, user_id, balance, currency in self.rng.sample(
                    accounts, min(self.profile.requests_per_day, len(accounts))):
                unit = Decimal(1).scaleb(-invariants.MINOR_DIGITS[currency])
                amount = (balance * Decimal(self.rng.randint(3, 12)) / 1000).quantize(unit)
                conn.execute(
                    """INSERT INTO investment.withdrawal_requests (account_id, user_id, amount, withdrawal_method,
                           destination_details, status, created_at)
                       VALUES (%s, %s, %s, 'stripe_payout', %s, 'approved', %s)""",
                    (account_id, user_id, amount, json.dumps({"bank_account_id": f"ba_soak_{account_id.hex[:10]}"}),
                     datetime(day.year, day.month, day.day, 9, tzinfo=UTC)))

    def backfills_on(self, index: int) -> bool:
        """Every few days, the last simulated day, and a month's last day (its month then distributes
        with every day stored, under that day's faults)."""
        day = self.dates[index]
        return ((index + 1) % self.profile.dates_per_backfill == 0 or index == len(self.dates) - 1
                or (day + timedelta(days=1)).month != day.month)

    def on_a_backfill_day(self, fault: F.PlannedFault) -> F.PlannedFault:
        """An engine fault hits the engine while daily_performance pulls from it: the first day from
        its planned one on which a backfill runs."""
        if fault.kind not in F.ENGINE_KINDS:
            return fault
        day = next(i for i in range(fault.day, len(self.dates)) if self.backfills_on(i))
        return F.PlannedFault(day, fault.kind, fault.after_seconds, fault.pick)

    def start_day(self, index: int, day: date) -> None:
        self.add_requests(day)
        if self.backfills_on(index):
            self.backfill(self.dates[0], day)
        for hour in (11, 23):
            self.trigger("withdrawal_processing", datetime(day.year, day.month, day.day, hour, tzinfo=UTC))
        self.trigger("ml_performance_sync", datetime(day.year, day.month, day.day, 12, 15, tzinfo=UTC))
        if day.weekday() == 6 or index == len(self.dates) - 1:
            self.trigger("data_cleanup", datetime(day.year, day.month, day.day, 3, tzinfo=UTC))

    def backfill(self, first: date, last: date, reprocess: str = "failed") -> None:
        self.wait_for("the previous daily_performance backfill to close", lambda: not self.meta(
            "SELECT 1 FROM backfill WHERE dag_id = 'daily_performance' AND completed_at IS NULL"))
        self.stack.airflow("backfill", "create", "--dag-id", "daily_performance", "--from-date", first.isoformat(),
                           "--to-date", last.isoformat(), "--reprocess-behavior", reprocess,
                           "--max-active-runs", "3", check=False)

    def months(self) -> list[str]:
        """The months whose every day is a simulated day."""
        return sorted({d.strftime("%Y-%m") for d in self.dates
                       if d.replace(day=1) in self.dates and (d + timedelta(days=1)).month != d.month})

    def distribute_months(self, months: list[str]) -> None:
        """A run of monthly_distribution for each month (a rerun distributes only what is not yet):
        the operator's *Trigger* of P, since with ``ENABLE_CRON_JOBS=false`` no rollup schedules it."""
        for month in months:
            last = (date.fromisoformat(f"{month}-01") + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            self.trigger("monthly_distribution", datetime(last.year, last.month, last.day, 12, tzinfo=UTC))

    def trigger(self, dag_id: str, logical: datetime) -> None:
        # A second run of one logical date (a rerun of a month) is a second later: same date or period.
        self.triggered[dag_id] = self.triggered.get(dag_id, -1) + 1
        logical += timedelta(seconds=self.triggered[dag_id])
        run_id = f"soak__{logical.isoformat()}__{secrets.token_hex(3)}"
        status, body = self.stack.api("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                                      {"logical_date": logical.isoformat(), "dag_run_id": run_id})
        if status != 200:
            raise RuntimeError(f"could not trigger {dag_id} at {logical}: {status} {body}")

    # --- faults --------------------------------------------------------------------------------
    def day_long_switches(self, planned: list[F.PlannedFault], day: date) -> tuple[dict, dict]:
        """The stand-ins' switches that hold for the day's runs (engine, Stripe), and their log."""
        engine: dict = {}
        stripe: dict = {}
        for fault in planned:
            if fault.kind not in F.DAY_LONG:
                continue
            target = ""
            if fault.kind == F.ENGINE_BURSTS:
                engine["fail_next"] = engine.get("fail_next", []) + [429, 500, 429, 500, 503, 429]
                target = "the engine's next 6 calls"
            elif fault.kind == F.ENGINE_SLOW:
                engine["latency_ms"] = 1200
                target = "every engine reply +1.2 s"
            elif fault.kind == F.ENGINE_MALFORMED:
                accounts = self.active_ids()
                chosen = random.Random(fault.pick).sample(accounts, min(2, len(accounts)))
                kinds = ("non_numeric", "nan", "missing_field", "negative_closing")
                engine["malformed"] = {a: kinds[(fault.pick + i) % len(kinds)] for i, a in enumerate(chosen)}
                self.malformed_dates.update(d for d in self.dates if d <= day)
                target = f"items of {', '.join(chosen)}"
            elif fault.kind == F.STRIPE_ERROR_AFTER_CREATE:
                stripe["error_after_create_next"] = stripe.get("error_after_create_next", 0) + 2
                target = "the next 2 payout creations"
            elif fault.kind == F.STRIPE_TIMEOUT_AFTER_CREATE:
                stripe.update(slow_after_create_next=stripe.get("slow_after_create_next", 0) + 1, slow_seconds=8)
                target = "the next payout creation (8 s; the client waits 5)"
            elif fault.kind == F.STRIPE_DROP_AFTER_CREATE:
                stripe["drop_after_create_next"] = stripe.get("drop_after_create_next", 0) + 2
                target = "the next 2 payout creations"
            elif fault.kind == F.STRIPE_RATE_LIMIT:
                stripe["fail_next"] = stripe.get("fail_next", []) + [429] * 6
                target = "the next 6 creations"
            self.fault_log.record(fault, target, day.isoformat())
        return engine, stripe

    def inject(self, fault: F.PlannedFault, day: date, engine_switches: dict) -> None:
        pick = random.Random(fault.pick)
        target = ""
        if fault.kind == F.WORKER_SIGKILL:
            workers = sorted(n for n in self.stack.procs if n.startswith("worker"))
            victim = self.worker_running_a_task() or pick.choice(workers)
            self.stack.kill(victim)
            time.sleep(3)
            self.stack.respawn(victim)
            target = victim
        elif fault.kind == F.SCHEDULER_RESTART:
            self.stack.kill("scheduler")
            time.sleep(2)
            self.stack.respawn("scheduler")
            target = "scheduler"
        elif fault.kind == F.POSTGRES_RESTART:
            down = 2 + pick.randrange(4)
            busy = self.when_a_job_writes()
            self.pg.restart_fast(down_seconds=down)
            target = f"the cluster, down {down} s ({busy} job session(s) busy)"
        elif fault.kind == F.TERMINATE_SESSIONS:
            self.when_a_job_writes()
            target = f"{self.pg.terminate_sessions()} session(s) of soak_jobs"
        elif fault.kind == F.ENGINE_DOWN:
            seconds = 8 + pick.randrange(12)
            EngineAdmin(self.engine.url).faults(**{**engine_switches, "down": True})
            time.sleep(seconds)
            EngineAdmin(self.engine.url).faults(**engine_switches)
            target = f"the engine, {seconds} s"
        elif fault.kind == F.STRIPE_FAILED_AFTER_PAID:
            admin = StripeAdmin(self.stripe.url)
            admin.advance()
            paid = [p for p in admin.payouts() if p["status"] == "paid" and not p.get("account")]
            if paid:
                victim = pick.choice(paid)
                admin.set_payout(victim["id"], status="failed", failure_code="account_closed",
                                 failure_message="The bank account has been closed")
                target = f"payout {victim['id']}"
            else:
                target = "none (no paid payout yet)"
        self.fault_log.record(fault, target, day.isoformat())

    def when_a_job_writes(self, most: float = 60) -> int:  # float-ok: seconds
        """Wait (up to ``most`` seconds) until a job's session is busy; how many are."""
        deadline = time.monotonic() + most
        while (busy := self.pg.busy_sessions()) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        return busy

    def worker_running_a_task(self) -> str | None:
        import psutil

        pids = {r[0] for r in self.meta("SELECT pid FROM task_instance WHERE state = 'running' AND pid IS NOT NULL")}
        for name, proc in self.stack.procs.items():
            if not name.startswith("worker"):
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                tree = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
                if tree & pids:
                    return name
        return None

    # --- waiting -------------------------------------------------------------------------------
    def meta(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        for attempt in range(30):  # the cluster may be restarting under a fault
            try:
                with psycopg.connect(self.stack.metadata_dsn, connect_timeout=5) as conn:
                    return conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if attempt == 29:
                    raise
                time.sleep(2)
        return []

    def supervise(self) -> None:
        restarted = self.stack.respawn_dead()
        if restarted:
            say(f"soak: supervisor restarted {', '.join(restarted)}")
            self.figures.processes_restarted_by_supervisor += len(restarted)

    def wait_for(self, what: str, probe, timeout: float = DAY_DEADLINE) -> object:  # noqa: ANN001  # float-ok
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervise()
            answer = probe()
            if answer:
                return answer
            time.sleep(3)
        raise RuntimeError(f"soak: timed out waiting for {what}")

    def runs_settled(self) -> bool:
        """No run queued or running, and no backfill open."""
        busy = self.meta("SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running')")[0][0]
        open_backfills = self.meta("SELECT count(*) FROM backfill WHERE completed_at IS NULL")[0][0]
        return busy == 0 and open_backfills == 0

    def active_ids(self) -> list[str]:
        import psycopg

        with psycopg.connect(self.pg.dsn("investment")) as conn:
            return [r[0] for r in conn.execute(
                "SELECT id::text FROM investment.accounts WHERE status = 'active' ORDER BY id")]

    # --- checks --------------------------------------------------------------------------------
    def check(self, *, during: bool, dates: list[date]) -> list[invariants.Check]:
        import psycopg

        stripe_payouts = [p for p in StripeAdmin(self.stripe.url).payouts() if not p.get("account")]
        with psycopg.connect(self.pg.dsn("investment")) as conn:
            accounts = invariants.engine_accounts(conn)
            months = [r[0] for r in conn.execute("SELECT DISTINCT period FROM investment.distributions")]
            checks = [invariants.payouts_once(conn, stripe_payouts, during=during),
                      invariants.requests_settled(conn, stripe_payouts, during=during),
                      invariants.ledger(conn),
                      *invariants.daily_rows(conn, self.seed, accounts, dates, during=during),
                      invariants.distributions(conn, months)]
            if not during:
                checks.append(invariants.no_staging_left(conn))
        self.figures.invariant_checks += len(checks)
        self.figures.items_checked += sum(c.checked for c in checks)
        return checks

    def record_violations(self, checks: list[invariants.Check], when: str) -> None:
        for c in checks:
            for v in c.violations[:20]:
                self.figures.violations.append(f"{when}: {c.name}: {v}")
            if len(c.violations) > 20:
                self.figures.violations.append(f"{when}: {c.name}: … {len(c.violations) - 20} more")

    def failed_runs(self) -> list[dict]:
        """Every failed run with its error (the ``job_failed`` line of its failed task's last attempt)
        and whether the README documents it."""
        out = []
        for dag_id, run_id in self.meta("SELECT dag_id, run_id FROM dag_run WHERE state = 'failed' ORDER BY id"):
            tasks = self.meta("""SELECT task_id, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s
                                 AND state = 'failed' ORDER BY end_date""", (dag_id, run_id))
            errors = [self.task_error(dag_id, run_id, task, attempt) for task, attempt in tasks]
            text = " | ".join(e for e in errors if e) or "(no failed task logged an error)"
            documented = any(re.search(p, text) for p in DOCUMENTED_FAILURES.get(dag_id, ()) + DEPLOYMENT_FAILURES)
            out.append({"dag_id": dag_id, "run_id": run_id, "tasks": [t for t, _ in tasks], "error": text[:400],
                        "documented": documented})
        return out

    def task_error(self, dag_id: str, run_id: str, task_id: str, attempt: int) -> str:
        log = (self.stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
               / f"attempt={attempt}.log")
        if not log.exists():
            return ""
        found = ""
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == "job_failed" or "job_failed" in str(entry.get("event", "")):
                    found = str(entry.get("error") or entry.get("event"))
                elif entry.get("level") == "error" and not found:
                    found = str(entry.get("event", ""))[:300]
                    detail = entry.get("error_detail")
                    if detail:
                        found += " " + json.dumps(detail)[:300]
        return found

    def search_secrets(self) -> dict[str, int]:
        """Every log, every XCom and both databases, searched for the run's secrets: hits per secret."""
        needles = {"stripe key": self.stripe_key, "webhook secret": self.webhook_secret,
                   "database password": self.pg.password}
        texts: list[str] = []
        for path in [*self.stack.home.rglob("*.log"), *self.work.glob("*.log"), *self.work.glob("*.jsonl"),
                     self.pg.log]:
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace"))
        texts.append(json.dumps(self.meta("SELECT value::text FROM xcom"), default=str))
        texts.append(self.pg.dump("investment"))
        texts.append(self.pg.dump("airflow_meta"))
        return {name: sum(t.count(secret) for t in texts) for name, secret in needles.items()}

    # --- the soak ------------------------------------------------------------------------------
    def run(self) -> Figures:
        started = time.monotonic()
        self.figures.commit = _commit()
        without = frozenset() if self.figures.executor == "CeleryExecutor" else frozenset({F.WORKER_SIGKILL})
        plan = [self.on_a_backfill_day(f) for f in
                F.plan(self.seed, self.profile.days, rate=self.profile.fault_rate, without=without)]
        for index, day in enumerate(self.dates):
            if index:
                self.a_day_passes()
            todays = [f for f in plan if f.day == index]
            engine_switches, stripe_switches = self.day_long_switches(todays, day)
            EngineAdmin(self.engine.url).faults(**engine_switches)
            StripeAdmin(self.stripe.url).faults(**stripe_switches)
            say(f"soak: day {index + 1}/{len(self.dates)} {day}: "
                f"{', '.join(f.kind for f in todays) or 'no faults'}")
            self.start_day(index, day)
            day_started = time.monotonic()
            for fault in (f for f in todays if f.kind not in F.DAY_LONG):
                with contextlib.suppress(Exception):
                    self.supervise()
                time.sleep(max(0.0, day_started + fault.after_seconds - time.monotonic()))
                self.inject(fault, day, engine_switches)
            self.wait_for(f"the runs of {day} to end", self.runs_settled)
            if (day + timedelta(days=1)).month != day.month:  # its days are in: the month distributes
                self.distribute_months([day.strftime("%Y-%m")])
                self.wait_for(f"the distribution of {day:%Y-%m} to end", self.runs_settled)
            EngineAdmin(self.engine.url).faults()
            StripeAdmin(self.stripe.url).faults()
            self.record_violations(self.check(during=True, dates=self.dates[: index + 1]), f"during {day}")
        say("soak: the faults have stopped; clean rounds until every invariant holds")
        self.figures.rounds_to_converge = self.converge()
        self.finish(started)
        return self.figures

    def a_day_passes(self) -> None:
        """Between two simulated days (and before the clean rounds) a day passes on both sides of
        the idempotency window: Stripe forgets its keys (it keeps them 24 h), and the requests'
        first attempts are a day older (past STRIPE_IDEMPOTENCY_WINDOW_HOURS the package looks a
        payout up by its metadata before it creates one). A stored 500 is replayed on its key until
        then, as it would be for a day in production; nothing else is moved."""
        import psycopg

        StripeAdmin(self.stripe.url).forget_keys()
        with psycopg.connect(self.pg.dsn("investment")) as conn:
            conn.execute("""UPDATE investment.withdrawal_requests
                            SET first_attempt_at = first_attempt_at - interval '1 day'
                            WHERE first_attempt_at IS NOT NULL""")

    def converge(self, most: int = 5) -> int:
        last = self.dates[-1]
        self.a_day_passes()
        for round_no in range(1, most + 1):
            self.supervise()
            reprocess = "completed" if round_no == 1 and self.malformed_dates else "failed"
            first = min(self.malformed_dates) if reprocess == "completed" else self.dates[0]
            self.backfill(first, last, reprocess)
            self.wait_for("the clean round's backfill to end", self.runs_settled)
            self.distribute_months(self.months())
            admin = StripeAdmin(self.stripe.url)
            admin.advance()
            admin.flush_webhooks()
            self.trigger("withdrawal_processing", datetime(last.year, last.month, last.day, 23, 40 + round_no,
                                                           tzinfo=UTC))
            self.wait_for("the clean round's withdrawal run to end", self.runs_settled)
            if round_no < 2:
                continue
            checks = self.check(during=False, dates=self.dates)
            if not any(c.violations for c in checks) or round_no == most:
                self.record_violations(checks, f"after {round_no} clean round(s)")
                return round_no
        return most

    def finish(self, started: float) -> None:  # float-ok
        import psycopg

        runs: dict[str, dict[str, int]] = {}
        for dag_id, state, count in self.meta("SELECT dag_id, state, count(*) FROM dag_run GROUP BY 1, 2"):
            runs.setdefault(dag_id, {})[state] = count
        self.figures.runs = runs
        self.figures.failed_runs = self.failed_runs()
        for run in self.figures.failed_runs:
            if not run["documented"]:
                self.figures.violations.append(f"{run['dag_id']} {run['run_id']} failed with an undocumented "
                                               f"message: {run['error'][:200]}")
        self.figures.secret_hits = self.search_secrets()
        for name, hits in self.figures.secret_hits.items():
            if hits:
                self.figures.violations.append(f"the {name} appears {hits} time(s) in logs, XComs or a database")
        self.figures.faults_by_kind = self.fault_log.by_kind()
        self.figures.faults_injected = len(self.fault_log.entries)
        with psycopg.connect(self.pg.dsn("investment")) as conn:
            self.figures.payouts = conn.execute(
                "SELECT count(*) FROM investment.withdrawal_requests WHERE status = 'completed'").fetchone()[0]
            self.figures.distributions = conn.execute("SELECT count(*) FROM investment.distributions").fetchone()[0]
            self.figures.daily_rows = conn.execute("SELECT count(*) FROM investment.daily_performance").fetchone()[0]
        self.figures.wall_seconds = round(time.monotonic() - started, 1)


def _commit() -> str:
    import subprocess

    from investment_jobs_dev import ROOT

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return (head + ("+" if git("status", "--porcelain", "--untracked-files=no") else "")) or "unknown"


# --- RELIABILITY.md --------------------------------------------------------------------------------
BEGIN, END = "<!-- soak figures: begin (written by make soak) -->", "<!-- soak figures: end -->"


def figures_row(f: Figures) -> str:
    runs = sum(sum(states.values()) for states in f.runs.values())
    failed = sum(states.get("failed", 0) for states in f.runs.values())
    kinds = ", ".join(f"{k} {n}" for k, n in f.faults_by_kind.items())
    return (f"| {f.profile} | {f.seed} | {f.commit} | {f.simulated_days} ({f.first_date} … {f.last_date}) | "
            f"{f.executor} | "
            f"{runs} ({failed} failed) | {f.faults_injected}: {kinds} | {f.processes_restarted_by_supervisor} | "
            f"{f.invariant_checks} ({f.items_checked:,} items) | **{len(f.violations)}** | {f.rounds_to_converge} | "
            f"{f.payouts} / {f.distributions} / {f.daily_rows:,} | {f.wall_seconds / 60:.1f} min |")


HEADER = ("| profile | seed | commit | simulated days | executor | runs | faults injected, by kind | processes "
          "restarted by the supervisor | invariant checks | violations | clean rounds to converge | payouts / "
          "distributions / daily rows | wall time |\n|---|---:|---|---|---|---|---|---:|---|---:|---:|---|---:|")


def write_report(path: Path, figures: Figures) -> None:
    """Replace this (profile, seed)'s row of the figures table in ``path``, keeping the others."""
    text = path.read_text() if path.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    table, tail = rest.split(END, 1)
    rows = [line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| profile") and
            not line.startswith(f"| {figures.profile} | {figures.seed} |")]
    rows.append(figures_row(figures))
    rows.sort(key=lambda r: (r.split("|")[1].strip() != "long", int(r.split("|")[2])))
    path.write_text(f"{head}{BEGIN}\n{HEADER}\n" + "\n".join(rows) + f"\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--days", type=int, default=int(os.environ.get("SOAK_DAYS", "0")) or None)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="RELIABILITY.md to write the figures into")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("SOAK_REDIS_DB", "0")) or None,
                        help="Celery's Redis database (default 14; another one lets two soaks run at once)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.days:
        profile = Profile(**{**asdict(profile), "days": args.days})
    work = args.work or LOCAL / f"soak-{profile.name}-{args.seed}"
    soak = Soak(profile, args.seed, work, args.redis_db)
    stop_on_signals()  # Ctrl-C or kill: the cluster, the stack and the stand-ins are stopped all the same
    try:
        soak.start()
        figures = soak.run()
    finally:
        soak.stop()
    (work / "soak-result.json").write_text(json.dumps(asdict(figures), indent=2, default=str) + "\n")
    if args.report:
        write_report(args.report, figures)
    say(f"soak: {figures.simulated_days} days, {figures.faults_injected} faults, {figures.invariant_checks} "
        f"invariant checks, {len(figures.violations)} violation(s), converged after {figures.rounds_to_converge} "
        f"clean round(s), {figures.wall_seconds / 60:.1f} min; {work / 'soak-result.json'}")
    for violation in figures.violations[:50]:
        print(f"  violation: {violation}", file=sys.stderr)
    return 0 if not figures.violations else 1


if __name__ == "__main__":
    raise SystemExit(main())
