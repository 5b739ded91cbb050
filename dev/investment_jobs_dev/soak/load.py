"""``make soak-load``: a backlog of approved withdrawals worked by two overlapping runs while the
Stripe stand-in enforces an account's rate limit and answers bursts of 429s.

The deployment is the soak's (:class:`~investment_jobs_dev.soak.run.Soak`: its own PostgreSQL
cluster, both stand-ins, Airflow on Celery with the ``stripe_api`` pool of 2 slots); the short
soak in ``make test`` works a small backlog the same way after its days (:class:`Backlog`). The Stripe
stand-in accepts ``--rate-limit`` API requests per second (25: Stripe's test mode) and refuses the
rest with 429 ``rate_limit``; every ``--burst-every`` seconds it also refuses the next
``--burst`` creates outright. Every Stripe task is paced at ``STRIPE_CALLS_PER_SECOND`` = 90 % of
the limit ÷ the pool's slots, so the deployment stays within the limit by itself.

The two runs: a run on the scheduler (pool, Celery worker) and, once it is paying, the operator's
``airflow dags test withdrawal_processing`` from a shell: a second client outside the pool, which
is what pushes the traffic past the limit. Both work the same processing requests under the
per-request advisory locks. Then clean runs until no request is in flight, and the checks: every
request completed, each paid by exactly one payout at Stripe (its own ledger) and booked once,
the ledger's arithmetic, and the traffic the stand-in saw (payouts per second, requests in flight
at once, 429s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from investment_jobs_dev import LOCAL, say
from investment_jobs_dev.processes import stop_on_signals
from investment_jobs_dev.soak import invariants
from investment_jobs_dev.soak.run import PROFILES, Soak, _commit, payable_accounts
from investment_jobs_dev.standins.admin import StripeAdmin

BANK_PREFIX = "ba_load_"  # the backlog's destinations: its requests among the soak's
POOL_SLOTS = 2  # stripe_api in airflow_settings.yaml
BACKLOG_DAY = date(2026, 6, 1)  # the backlog runs' logical dates: after a soak's days, not in the future
RUN_DEADLINE = 3600  # seconds for the runs to end: generous, never a timing assertion


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(BACKLOG_DAY.year, BACKLOG_DAY.month, BACKLOG_DAY.day, hour, minute, tzinfo=UTC)


@dataclass
class LoadFigures:
    requests: int
    rate_limit: int
    calls_per_second_per_task: float  # float-ok: a rate
    commit: str = ""
    completed: int = 0
    stripe_payouts: int = 0
    runs: dict[str, int] = field(default_factory=dict)  # scheduler runs by state, and the shell run's
    clean_runs: int = 0
    bursts: int = 0
    injected_429: int = 0
    rate_limited_429: int = 0
    max_payouts_in_a_second: int = 0
    max_requests_in_flight: int = 0
    seconds_paying: int = 0
    violations: list[str] = field(default_factory=list)
    wall_seconds: float = 0  # float-ok: seconds


def paced_env(rate_limit: int) -> dict[str, str]:
    """The deployment's settings for an account limited to ``rate_limit`` requests per second: each
    Stripe task paced at 90 % of it ÷ the pool's slots."""
    return {"STRIPE_CALLS_PER_SECOND": str(round(rate_limit * 0.9 / POOL_SLOTS, 2)), "STRIPE_RATE_LIMIT_ATTEMPTS": "4"}


class Backlog:
    """The load on a started soak deployment (its own cluster, stand-ins and stack)."""

    def __init__(self, soak: Soak, requests: int, rate_limit: int, burst: int = 10,
                 burst_every: float = 20) -> None:  # float-ok: seconds
        self.soak, self.requests, self.rate_limit, self.burst, self.burst_every = (
            soak, requests, rate_limit, burst, burst_every)
        self.load = LoadFigures(requests, rate_limit, float(soak.extra_env.get("STRIPE_CALLS_PER_SECOND", 0)))
        self.both_running = threading.Event()
        self.done = threading.Event()

    def add_backlog(self) -> None:
        """``requests`` approved Stripe payouts spread over the active accounts, each a small exact
        amount in its currency's units, all of them within the account's balance."""
        import psycopg

        from investment_jobs_dev.book import withdrawal_amount

        rng = random.Random(self.requests)
        with psycopg.connect(self.soak.pg.dsn("investment")) as conn:
            accounts = payable_accounts(conn)
            share = max(self.requests // len(accounts), 1) * 2  # together at most half a balance
            with conn.cursor().copy(
                    """COPY investment.withdrawal_requests (account_id, user_id, amount, withdrawal_method,
                       destination_details, status, created_at) FROM STDIN""") as copy:
                for i in range(self.requests):
                    account_id, user_id, balance, currency = accounts[i % len(accounts)]
                    amount = withdrawal_amount(rng, balance * 10 / share, currency)  # up to balance/share
                    copy.write_row((account_id, user_id, amount, "stripe_payout",
                                    json.dumps({"bank_account_id": f"{BANK_PREFIX}{i:05d}"}), "approved",
                                    datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)))

    def bursts(self) -> None:
        """Every ``burst_every`` seconds, the next ``burst`` creates are refused with 429, over the limit."""
        admin = StripeAdmin(self.soak.stripe.url)
        while not self.done.wait(self.burst_every):
            admin.faults(rate_limit=self.rate_limit, fail_next=[429] * self.burst)
            self.load.bursts += 1

    def shell_run(self, result: dict) -> None:
        """The operator's run from a shell, started once the scheduler's run is paying."""
        self.both_running.wait(RUN_DEADLINE)
        out = self.soak.stack.airflow("dags", "test", "withdrawal_processing",
                                      f"{BACKLOG_DAY.isoformat()}T12:00:00+00:00", check=False, timeout=RUN_DEADLINE)
        result["returncode"] = out.returncode
        result["tail"] = (out.stdout + out.stderr)[-2000:]

    def paying(self) -> bool:
        return bool(self.soak.meta("""SELECT 1 FROM task_instance WHERE dag_id = 'withdrawal_processing'
                                 AND task_id = 'pay' AND state = 'running'""")) and bool(
            StripeAdmin(self.soak.stripe.url).payouts())

    def in_flight(self) -> int:
        import psycopg

        with psycopg.connect(self.soak.pg.dsn("investment")) as conn:
            return conn.execute("""SELECT count(*) FROM investment.withdrawal_requests
                                   WHERE status IN ('approved', 'processing')""").fetchone()[0]

    def run(self) -> LoadFigures:
        started = time.monotonic()
        self.load.commit = _commit()
        self.add_backlog()
        admin = StripeAdmin(self.soak.stripe.url)
        admin.faults(rate_limit=self.rate_limit)
        admin.reset_traffic()
        stats_before = admin.stats()["stats"]
        say(f"soak-load: {self.requests:,} approved requests; Stripe allows {self.rate_limit}/s; each task paced "
            f"at {self.load.calls_per_second_per_task}/s; a burst of {self.burst} 429s every {self.burst_every} s")
        shell: dict = {}
        threads = [threading.Thread(target=self.bursts, daemon=True),
                   threading.Thread(target=self.shell_run, args=(shell,), daemon=True)]
        for thread in threads:
            thread.start()
        self.soak.trigger("withdrawal_processing", at(11))
        self.soak.wait_for("the scheduler's run to pay", self.paying, timeout=RUN_DEADLINE)
        self.both_running.set()
        say("soak-load: the scheduler's run is paying; the shell run starts")
        threads[1].join(RUN_DEADLINE)
        self.soak.wait_for("the scheduler's run to end", self.soak.runs_settled, timeout=RUN_DEADLINE)
        self.done.set()
        admin.faults(rate_limit=self.rate_limit)
        self.load.runs["shell run exit code"] = shell.get("returncode", -1)
        (self.soak.work / "shell-run.log").write_text(shell.get("tail", ""))
        for round_no in range(1, 6):  # the ones a 429 left processing, and the banks' answers
            if not self.in_flight():
                break
            admin.advance()
            self.soak.trigger("withdrawal_processing", at(12, round_no))
            self.soak.wait_for("a clean run to end", self.soak.runs_settled, timeout=RUN_DEADLINE)
            self.load.clean_runs = round_no
        self.finish_load(started, stats_before)
        return self.load

    def finish_load(self, started: float, stats_before: dict[str, int]) -> None:  # float-ok: seconds
        import psycopg

        payouts = StripeAdmin(self.soak.stripe.url).payouts()
        stats = StripeAdmin(self.soak.stripe.url).stats()
        with psycopg.connect(self.soak.pg.dsn("investment")) as conn:
            checks = [invariants.payouts_once(conn, payouts), invariants.requests_settled(conn, payouts, during=False),
                      invariants.ledger(conn)]
            backlog = {r[0] for r in conn.execute(
                """SELECT id::text FROM investment.withdrawal_requests
                   WHERE destination_details->>'bank_account_id' LIKE %s""", (BANK_PREFIX + "%",))}
            self.load.completed = conn.execute(
                """SELECT count(*) FROM investment.withdrawal_requests
                   WHERE status = 'completed' AND id::text = ANY(%s)""", (sorted(backlog),)).fetchone()[0]
        for c in checks:
            self.load.violations += [f"{c.name}: {v}" for v in c.violations[:20]]
        if self.load.completed != self.requests:
            self.load.violations.append(f"{self.load.completed:,} of {self.requests:,} requests completed")
        self.load.stripe_payouts = sum(p.get("metadata", {}).get("withdrawal_request_id") in backlog
                                       for p in payouts)
        traffic = stats["traffic"]
        self.load.max_payouts_in_a_second = traffic["max_payouts_in_a_second"]
        self.load.max_requests_in_flight = traffic["max_in_flight"]
        self.load.seconds_paying = traffic["seconds_with_payouts"]
        self.load.injected_429 = stats["stats"].get("injected 429", 0) - stats_before.get("injected 429", 0)
        self.load.rate_limited_429 = (stats["stats"].get("rate limited 429", 0)
                                      - stats_before.get("rate limited 429", 0))
        if self.load.max_payouts_in_a_second > self.rate_limit:
            self.load.violations.append(f"{self.load.max_payouts_in_a_second} payouts in one second, over the "
                                        f"limit of {self.rate_limit}")
        for (state, count) in self.soak.meta(
                """SELECT state, count(*) FROM dag_run WHERE dag_id = 'withdrawal_processing'
                   AND logical_date >= %s GROUP BY 1""", (BACKLOG_DAY,)):
            self.load.runs[f"runs {state}"] = count
        self.load.wall_seconds = round(time.monotonic() - started, 1)


# --- RELIABILITY.md --------------------------------------------------------------------------------
BEGIN, END = "<!-- load figures: begin (written by make soak-load) -->", "<!-- load figures: end -->"
HEADER = ("| commit | approved requests | completed | payouts at Stripe | Stripe's limit; each task paced at | "
          "429s: bursts injected / over the limit | most payouts in one second | most API requests in flight | "
          "seconds paying | runs by state (the shell run among them; its exit code) | clean runs | violations | "
          "wall time |\n|---|---:|---:|---:|---|---|---:|---:|---:|---|---:|---:|---:|")


def figures_row(f: LoadFigures) -> str:
    runs = ", ".join(f"{k} {v}" for k, v in f.runs.items())
    return (f"| {f.commit} | {f.requests:,} | {f.completed:,} | {f.stripe_payouts:,} | {f.rate_limit}/s; "
            f"{f.calls_per_second_per_task}/s | {f.injected_429} in {f.bursts} bursts / {f.rate_limited_429} | "
            f"{f.max_payouts_in_a_second} | {f.max_requests_in_flight} | {f.seconds_paying} | {runs} | "
            f"{f.clean_runs} | **{len(f.violations)}** | {f.wall_seconds / 60:.1f} min |")


def write_report(path: Path, figures: LoadFigures) -> None:
    """Replace the load row of ``path`` (one per number of requests), keeping the others."""
    text = path.read_text()
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    table, tail = rest.split(END, 1)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| commit")
            and line.split("|")[2].strip() != f"{figures.requests:,}"]
    rows.append(figures_row(figures))
    path.write_text(f"{head}{BEGIN}\n{HEADER}\n" + "\n".join(rows) + f"\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate-limit", type=int, default=25, help="API requests per second Stripe accepts")
    parser.add_argument("--burst", type=int, default=10, help="creates refused with 429 in each burst")
    parser.add_argument("--burst-every", type=float, default=20.0, help="seconds between bursts")  # float-ok
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="RELIABILITY.md to write the figures into")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("SOAK_REDIS_DB", "0")) or 10,
                        help="Celery's Redis database (default 10: beside the soaks' and the stack test's)")
    args = parser.parse_args(argv)
    work = args.work or LOCAL / f"soak-load-{args.requests}"
    soak = Soak(PROFILES["short"], seed=7, work=work, redis_db=args.redis_db)
    soak.extra_env = {**paced_env(args.rate_limit), "WITHDRAWAL_BATCH_SIZE": str(args.requests)}
    stop_on_signals()
    try:
        soak.start()
        figures = Backlog(soak, args.requests, args.rate_limit, args.burst, args.burst_every).run()
    finally:
        soak.stop()
    (work / "load-result.json").write_text(json.dumps(asdict(figures), indent=2, default=str) + "\n")
    if args.report:
        write_report(args.report, figures)
    say(f"soak-load: {figures.completed:,} of {figures.requests:,} completed, {figures.stripe_payouts:,} payouts, "
        f"at most {figures.max_payouts_in_a_second} in a second (limit {figures.rate_limit}), "
        f"{len(figures.violations)} violation(s), {figures.wall_seconds / 60:.1f} min; {work / 'load-result.json'}")
    for violation in figures.violations[:50]:
        print(f"  violation: {violation}", file=sys.stderr)
    return 0 if not figures.violations else 1


if __name__ == "__main__":
    raise SystemExit(main())
