"""make bench: daily_performance for one business date at 10k and 100k accounts, in one run, beside

- the baseline: what the original does (one HTTP call per account, a SELECT of the previous day,
  a row INSERT and an account UPDATE), at 10k accounts;
- the floor: the same bulk pages fetched and parsed into Decimal, COPY into a staging table and
  one upsert, no business logic, at 100k accounts.

Real PostgreSQL (127.0.0.1:5432, else embedded), the ML engine stand-in as its own process with
its pages rendered before timing starts. Each DAG measurement runs in a fresh process (peak RSS is
that run's). Writes bench/results.json and the table in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
RESULTS = ROOT / "bench" / "results.json"
DAY = date(2026, 1, 5)
PAGE_SIZE = 5000
# The 100k job and the tight floor each time D and the two days after it, and report the median:
# the ratio of two single runs on this machine moved between 2.6 and 4.3 from run to run.
MORE_DAYS = (DAY + timedelta(days=1), DAY + timedelta(days=2))
SEED = 5
PORT = 8791
PACED_REQUESTS = 10_000  # paid under Stripe's rate limit ...
RATE_LIMIT = 25  # ... of its test mode, requests a second (100 live)


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def base_env() -> dict[str, str]:
    from investment_jobs_dev.airflow_env import checkout_env

    return checkout_env(WORK / "airflow", **{
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_ML_ENGINE": f"http://127.0.0.1:{PORT}",
        "ML_ENGINE_PAGE_SIZE": str(PAGE_SIZE),
        "CRON_TIMEZONE": "UTC",
        "DISTRIBUTION_APPROVAL": "auto",  # the job is measured, not a person's answer (the review still runs)
        "OPERATOR_DECISIONS": "skip",  # dag.test() cannot answer a Required Action
        "DEADLINE_ALERTS": "false",  # dag.test() cannot finish a DAG with a Deadline Alert (Airflow 3.3.2)
    })


class Engine:
    """The ML engine stand-in in its own process, with the book loaded and its pages rendered."""

    def __init__(self) -> None:
        from investment_jobs_dev.standins.admin import EngineAdmin
        from investment_jobs_dev.standins.launcher import ML_ENGINE, StandIn

        self.stand_in = StandIn(ML_ENGINE, PORT, WORK / "standin.log").start()
        self.url = self.stand_in.url
        self.admin = EngineAdmin(self.url)

    def load_book(self, registration: list[dict], days: list[date], shards: int = 1) -> None:
        self.admin.reset()
        self.admin.register(registration)
        for day in days:  # render the pages before any timing starts
            self.admin.warm(day, PAGE_SIZE)
        if shards > 1:
            self.admin.warm(days[-1], PAGE_SIZE, shards)

    def stop(self) -> None:
        self.stand_in.stop()


def prepare_book(server, name: str, accounts: int):  # noqa: ANN001, ANN201
    import psycopg

    from investment_jobs.db.migrate import upgrade
    from investment_jobs_dev.book import plan_book, seed_book

    dsn = server.fresh_database(name)
    upgrade(lambda: psycopg.connect(dsn))
    book = plan_book(accounts, SEED, date(2025, 1, 1), date(2025, 12, 1))
    with psycopg.connect(dsn) as conn:
        seed_book(conn, book, SEED)
        conn.execute("ANALYZE")
    return dsn, book


def run_dag(dsn: str, warm_up: date, day: date, dag_id: str = "daily_performance",
            more_days: tuple[date, ...] = ()) -> dict:
    """The DAG for ``warm_up`` (untimed; for daily_performance it stores the previous day), then
    ``day`` (and ``more_days``: the figures are then the median run's)."""
    env = base_env()
    env["AIRFLOW_CONN_INVESTMENT_DB"] = dsn
    out = subprocess.run([sys.executable, "-m", "bench.run_dag", dag_id, warm_up.isoformat(),
                          day.isoformat(), *(d.isoformat() for d in more_days)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{dag_id} {day} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def baseline(dsn: str, engine_url: str, day: date) -> dict:
    """The original's pattern: per account, GET its day, SELECT its previous day, INSERT, UPDATE."""
    import psycopg
    import requests

    from investment_jobs.money import loads_exact

    session = requests.Session()
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        accounts = conn.execute(
            """SELECT id, product_id, initial_investment FROM investment.accounts
               WHERE status = 'active' AND opened_at::date <= %s""", (day,)).fetchall()
        done = 0
        for account_id, product_id, initial in accounts:
            resp = session.get(f"{engine_url}/api/v1/accounts/{account_id}/performance",
                               params={"start_date": day.isoformat(), "end_date": day.isoformat()})
            items = loads_exact(resp.content)
            if not items:
                continue
            perf = items[0]
            prev = conn.execute(
                """SELECT cumulative_return FROM investment.daily_performance
                   WHERE account_id = %s AND date < %s ORDER BY date DESC LIMIT 1""",
                (account_id, day)).fetchone()
            daily_return = Decimal(perf["daily_return"])
            cumulative = (prev[0] if prev else 0) + daily_return
            pct = cumulative / initial * 100 if initial else Decimal(0)
            conn.execute(
                """INSERT INTO investment.daily_performance (account_id, product_id, date, opening_balance,
                   closing_balance, daily_return, daily_return_percentage, cumulative_return,
                   cumulative_return_percentage, trades_executed, winning_trades, losing_trades, ml_agent_data)
                   VALUES (%s,%s,%s,%s,%s,%s,%s,%s,round(%s, 10),%s,%s,%s,%s)""",
                (account_id, product_id, day, perf["opening_balance"], perf["closing_balance"], daily_return,
                 perf["daily_return_percentage"], cumulative, pct, perf["trades_executed"],
                 perf["winning_trades"], perf["losing_trades"], json.dumps(perf["ml_agent_data"])))
            conn.execute("""UPDATE investment.accounts SET current_balance = %s,
                            total_return_percentage = round(%s, 10) WHERE id = %s""",
                         (perf["closing_balance"], pct, account_id))
            done += 1
        seconds = time.perf_counter() - started
    return {"accounts": done, "seconds": round(seconds, 3), "accounts_per_s": round(done / seconds, 1)}


def floor(dsn: str, day: date) -> dict:
    """Bulk pages → Decimal → COPY into staging → one upsert. No validation, no business logic."""
    import psycopg

    from investment_jobs.bulk import cyclic_gc_paused
    from investment_jobs.config import HttpRetryPolicy
    from investment_jobs.ml_engine.client import MLEngineClient

    os.environ.update(base_env())
    os.environ["AIRFLOW_CONN_INVESTMENT_DB"] = dsn
    policy = HttpRetryPolicy(attempts=1, initial_wait=0, max_wait=0, timeout=60)
    from airflow.providers.http.hooks.http import HttpHook  # noqa: F401 - imported before the timing, as a worker has it
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(dsn) as conn, MLEngineClient(policy=policy) as client:
        conn.execute("""CREATE TEMP TABLE floor_stage (account_id uuid, opening_balance numeric,
                        closing_balance numeric, daily_return numeric, daily_return_percentage numeric,
                        trades_executed int, winning_trades int, losing_trades int, ml_agent_data jsonb)""")
        with conn.cursor().copy("COPY floor_stage FROM STDIN") as copy, cyclic_gc_paused():  # as the job's pull
            for page in client.iter_daily_performance(day, PAGE_SIZE):
                for i in page:  # the bench's book is clean: every page comes typed (EngineItem)
                    copy.write_row((i.account_id, Decimal(i.opening_balance), Decimal(i.closing_balance),
                                    Decimal(i.daily_return), Decimal(i.daily_return_percentage),
                                    i.trades_executed, i.winning_trades, i.losing_trades,
                                    json.dumps(i.ml_agent_data, default=str)))
                    rows += 1
        copied = time.perf_counter()
        conn.execute("SELECT investment.ensure_daily_partition(%s)", (day,))
        conn.execute(
            """INSERT INTO investment.daily_performance AS t (account_id, product_id, date, opening_balance,
               closing_balance, daily_return, daily_return_percentage, cumulative_return,
               cumulative_return_percentage, trades_executed, winning_trades, losing_trades, ml_agent_data)
               SELECT s.account_id, a.product_id, %s, s.opening_balance, s.closing_balance, s.daily_return,
                      s.daily_return_percentage, s.daily_return, s.daily_return_percentage, s.trades_executed,
                      s.winning_trades, s.losing_trades, s.ml_agent_data
               FROM floor_stage s JOIN investment.accounts a ON a.id = s.account_id
               ON CONFLICT (account_id, date) DO UPDATE SET closing_balance = EXCLUDED.closing_balance""",
            (day,))
        conn.commit()
    seconds = time.perf_counter() - started
    return {"accounts": rows, "seconds": round(seconds, 3),
            "fetch_parse_copy_seconds": round(copied - started, 3),
            "upsert_seconds": round(seconds - (copied - started), 3)}


TIGHT_TABLE = """
    CREATE {unlogged} TABLE IF NOT EXISTS public.floor_{name} (
        account_id uuid NOT NULL, date date NOT NULL, opening_balance numeric(20, 8) NOT NULL,
        closing_balance numeric(20, 8) NOT NULL, daily_return numeric(20, 8) NOT NULL,
        daily_return_percentage numeric(20, 10) NOT NULL, trades_executed integer NOT NULL,
        winning_trades integer NOT NULL, losing_trades integer NOT NULL, ml_agent_data jsonb{key}){partitioned}
"""


def tight_floor(dsn: str, day: date) -> dict:
    """The least work that stores D: the same bulk pages, every amount parsed exactly (Decimal from the
    JSON text), COPY into an UNLOGGED table, one upsert into a (logged) table with only the unique key
    (no foreign keys, no other index, no trigger). Runs for the day before first (untimed) so that the
    target holds a day already, as the job's does in the steady state. Beside it (not in its time),
    the same upsert into the same table partitioned by month: what partitioning alone costs."""
    import psycopg

    from investment_jobs.bulk import cyclic_gc_paused
    from investment_jobs.config import HttpRetryPolicy
    from investment_jobs.ml_engine.client import MLEngineClient

    os.environ.update(base_env())
    policy = HttpRetryPolicy(attempts=1, initial_wait=0, max_wait=0, timeout=60)

    def one_day(conn, client, when: date) -> tuple[int, float, float, float]:  # noqa: ANN001
        started = time.perf_counter()
        conn.execute("DROP TABLE IF EXISTS public.floor_stage")
        conn.execute(TIGHT_TABLE.format(unlogged="UNLOGGED", name="stage", key="", partitioned=""))
        rows = 0
        with conn.cursor().copy("COPY public.floor_stage FROM STDIN") as copy, cyclic_gc_paused():  # as the job's pull
            for page in client.iter_daily_performance(when, PAGE_SIZE):
                for i in page:  # the bench's book is clean: every page comes typed (EngineItem)
                    copy.write_row((i.account_id, when, Decimal(i.opening_balance),
                                    Decimal(i.closing_balance), Decimal(i.daily_return),
                                    Decimal(i.daily_return_percentage), i.trades_executed,
                                    i.winning_trades, i.losing_trades,
                                    json.dumps(i.ml_agent_data, default=str)))
                    rows += 1
        copied = time.perf_counter()
        conn.execute("""INSERT INTO public.floor_daily AS t SELECT * FROM public.floor_stage
                        ON CONFLICT (account_id, date) DO UPDATE SET closing_balance = EXCLUDED.closing_balance""")
        conn.commit()
        upserted = time.perf_counter()
        # Beside it, what partitioning by month costs the same upsert (outside the floor's time).
        conn.execute("""INSERT INTO public.floor_daily_by_month AS t SELECT * FROM public.floor_stage
                        ON CONFLICT (account_id, date) DO UPDATE SET closing_balance = EXCLUDED.closing_balance""")
        conn.commit()
        return rows, copied - started, upserted - copied, time.perf_counter() - upserted

    with psycopg.connect(dsn) as conn, MLEngineClient(policy=policy) as client:
        key = ", PRIMARY KEY (account_id, date)"
        conn.execute(TIGHT_TABLE.format(unlogged="", name="daily", key=key, partitioned=""))  # logged, as ours
        conn.execute(TIGHT_TABLE.format(unlogged="", name="daily_by_month", key=key,
                                        partitioned=" PARTITION BY RANGE (date)"))
        month = day.replace(day=1)
        conn.execute(f"""CREATE TABLE public.floor_daily_month_of_d PARTITION OF public.floor_daily_by_month
                         FOR VALUES FROM ('{month}') TO ('{(month + timedelta(days=32)).replace(day=1)}')""")
        if (day - timedelta(days=1)).month != day.month:
            raise ValueError("the tight floor's business date and the day before are in one month")
        one_day(conn, client, day - timedelta(days=1))
        runs = []
        for when in (day, *MORE_DAYS):
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute("CHECKPOINT")  # as before each timed run of the job
            runs.append(one_day(conn, client, when))
    rows, copy_seconds, upsert_seconds, partitioned_seconds = sorted(runs, key=lambda r: r[1] + r[2])[len(runs) // 2]
    return {"accounts": rows, "seconds": round(copy_seconds + upsert_seconds, 3),
            "fetch_parse_copy_seconds": round(copy_seconds, 3), "upsert_seconds": round(upsert_seconds, 3),
            "upsert_into_month_partitions_seconds": round(partitioned_seconds, 3),
            "seconds_each": [round(r[1] + r[2], 3) for r in runs]}


# Every active account's 31 days of 2026-01 (bench_monthly, bench.profile_monthly).
MONTHLY_ROWS = """
    INSERT INTO investment.daily_performance (account_id, product_id, date, opening_balance,
        closing_balance, daily_return, daily_return_percentage, cumulative_return,
        cumulative_return_percentage, trades_executed, winning_trades, losing_trades)
    SELECT a.id, a.product_id, g.d::date, 10000, 10000 + r.ret, r.ret, r.ret / 100, r.ret, 0, 1, 1, 0
    FROM investment.accounts a
    CROSS JOIN generate_series('2026-01-01'::date, '2026-01-31'::date, interval '1 day') g(d)
    CROSS JOIN LATERAL (SELECT ((abs(hashtext(a.id::text || g.d::text)) % 2001) - 900)::numeric / 100
                        AS ret) r
    WHERE a.status <> 'suspended' AND a.opened_at::date <= g.d
      AND (a.closed_at IS NULL OR a.closed_at::date > g.d)
"""


def bench_monthly(server, accounts: int = 100_000, name: str = "ij_bench_monthly") -> dict:  # noqa: ANN001
    """monthly_distribution for 2026-01 over ``accounts`` accounts, each with its 31 days stored."""
    import psycopg

    dsn, _ = prepare_book(server, name, accounts)
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        conn.execute("SELECT investment.ensure_daily_partition('2026-01-01')")
        conn.execute(MONTHLY_ROWS)
        conn.commit()
        # The month as 31 nightly runs leave it: vacuumed and its hint bits set (autovacuum and the
        # daily reads did that long before the month closes). Without it the timed run raced the
        # insert-triggered autovacuum of the partition and set every page's hint bits on its first read.
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) investment.daily_performance")
        conn.autocommit = False
        rows = conn.execute("SELECT count(*) FROM investment.daily_performance").fetchone()[0]
        log(f"monthly: {rows} daily rows stored in {time.perf_counter() - started:.1f} s (untimed)")
    # Warm-up: a month before any account opened (nothing to do), then January, timed.
    result = run_dag(dsn, date(2024, 12, 1), date(2026, 1, 1), dag_id="monthly_distribution")
    with psycopg.connect(dsn) as conn:
        result["distributions"] = conn.execute("SELECT count(*) FROM investment.distributions").fetchone()[0]
    result["daily_rows"] = rows
    return result


YEAR_START = date(2025, 2, 1)  # with January 2026, 365 stored days


def january_day_of(day_sql: str) -> str:
    """The January 2026 day whose rows an earlier date of the benchmark's year repeats."""
    return f"(date '2026-01-01' + mod(({day_sql})::date - date '{YEAR_START.isoformat()}', 31))"


def extend_to_a_year(conn) -> dict:  # noqa: ANN001
    """Grow the monthly book's 31 stored days of raw ``daily_performance`` to 365 (2025-02-01 …
    2026-01-31), each earlier date holding a January day's rows (untimed setup). A bulk load:
    the foreign-key triggers are off for the session and the primary key is rebuilt after the
    load, as one would restore a table; the date index is kept (each month's load reads January's
    rows by it). What the sections and the summaries then read is the table a year leaves."""
    started = time.perf_counter()
    columns = [row[0] for row in conn.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'investment' AND table_name = 'daily_performance' ORDER BY ordinal_position""")]
    selected = ", ".join("g.d::date" if name == "date" else f"src.{name}" for name in columns)
    primary_key = conn.execute(
        """SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = 'investment.daily_performance'::regclass AND contype = 'p'""").fetchone()
    conn.execute(f"ALTER TABLE investment.daily_performance DROP CONSTRAINT {primary_key[0]}")
    conn.execute("SELECT investment.ensure_daily_partitions(%s, '2025-12-31')", (YEAR_START,))
    conn.execute("SET session_replication_role = replica")  # no reference triggers for the bulk load
    month_start = YEAR_START
    while month_start < date(2026, 1, 1):
        month_end = (month_start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        conn.execute(
            f"""INSERT INTO investment.daily_performance ({", ".join(columns)})
                SELECT {selected}
                FROM generate_series(%s::date, %s::date, interval '1 day') g(d)
                JOIN investment.daily_performance src ON src.date = {january_day_of("g.d")}
                WHERE src.date BETWEEN '2026-01-01' AND '2026-01-31'""", (month_start, month_end))
        conn.commit()
        log(f"fund view: raw daily rows of {month_start:%Y-%m} stored ({time.perf_counter() - started:.0f} s)")
        month_start = month_end + timedelta(days=1)
    conn.execute("SET session_replication_role = DEFAULT")
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute(f"ALTER TABLE investment.daily_performance ADD CONSTRAINT {primary_key[0]} {primary_key[1]}")
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE) investment.daily_performance")
    conn.autocommit = False
    rows, days = conn.execute(
        "SELECT count(*), count(DISTINCT date) FROM investment.daily_performance").fetchone()
    size = conn.execute(  # a partitioned table has no storage of its own: its partitions' sizes
        "SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('investment.daily_performance')"
    ).fetchone()[0]
    seconds = time.perf_counter() - started
    log(f"fund view: {rows} raw daily rows over {days} dates ({size / 2**30:.1f} GiB) in {seconds:.0f} s (untimed)")
    return {"raw_daily_rows": rows, "stored_days": days, "raw_table_gib": round(size / 2**30, 2),
            "load_seconds": round(seconds)}


def bench_fund(dsn: str, daily_job_seconds: float) -> dict:
    """The fund view on the 100k-account book of the monthly benchmark grown to a year: what its
    summaries cost a daily run (with 31 and with 365 stored days), and each section's data time
    over a year of summary rows beside 36.5M raw daily rows."""
    import statistics

    import psycopg

    from investment_jobs.operations import fund_view
    from investment_jobs.operations.fund_page import render
    from investment_jobs.views import fund
    from investment_jobs.views.summaries import refresh_book_day, refresh_periods

    def refresh_cost(conn, days: list[date]) -> list[float]:  # noqa: ANN001
        costs = []
        for day in days:  # what store_day pays per business date at 100k accounts
            started = time.perf_counter()
            refresh_book_day(conn, day)
            conn.commit()
            costs.append(time.perf_counter() - started)
        return costs

    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(31)]
    with psycopg.connect(dsn) as conn:
        refresh_costs = refresh_cost(conn, days)
        refresh_periods(conn, ["2026-01"])
        grown = extend_to_a_year(conn)
        # The year's summaries: each earlier date's are its January day's (untimed setup)...
        conn.execute(
            f"""INSERT INTO investment.book_daily (product_id, date, currency, accounts, opening_balance,
                   closing_balance, daily_return, trades_executed, winning_trades, losing_trades, return_buckets,
                   best, worst)
               SELECT b.product_id, g.d::date, b.currency, b.accounts, b.opening_balance, b.closing_balance,
                      b.daily_return, b.trades_executed, b.winning_trades, b.losing_trades, b.return_buckets,
                      b.best, b.worst
               FROM generate_series(%s::date, '2025-12-31'::date, interval '1 day') g(d)
               JOIN investment.book_daily b ON b.date = {january_day_of("g.d")}
               ON CONFLICT DO NOTHING""", (YEAR_START,))
        conn.commit()
        # ... and the cost of a date's summary once the table holds a year (a date a month apart).
        year_costs = refresh_cost(conn, [YEAR_START + timedelta(days=30 * i + 14) for i in range(11)])
        for months_back in range(1, 12):
            conn.execute(
                """INSERT INTO investment.distribution_monthly (product_id, period, currency, accounts,
                       distributed_accounts, no_profit_accounts, gross_profit, performance_fee_amount, net_profit,
                       below_high_water_mark)
                   SELECT product_id, to_char(date '2026-01-01' - make_interval(months => %s), 'YYYY-MM'), currency,
                          accounts, distributed_accounts, no_profit_accounts, gross_profit, performance_fee_amount,
                          net_profit, below_high_water_mark
                   FROM investment.distribution_monthly WHERE period = '2026-01'""", (months_back,))
        conn.execute(
            """INSERT INTO investment.run_quality (job, subject, run_id, active_accounts, stored, missing, rejected,
                   rejected_by_reason)
               SELECT 'daily_performance', d::date::text, 'bench', 100000, 99990, 10, 3, '{"bad amount": 3}'
               FROM generate_series('2025-02-01'::date, '2026-01-31'::date, interval '1 day') d""")
        conn.execute(
            """INSERT INTO investment.payouts_daily (date, currency, paid_count, paid_amount, reversed_count,
                   reversed_amount, failed_count, failed_amount, in_flight_count, in_flight_amount)
               SELECT d::date, c, 40, 40000, 1, 500, 2, 900, 3, 1200
               FROM generate_series('2025-02-01'::date, '2026-01-31'::date, interval '1 day') d,
                    unnest(ARRAY['eur', 'jpy', 'kwd', 'usd']) c""")
        conn.commit()
        conn.execute("ANALYZE")
        product = conn.execute("SELECT id::text FROM investment.products ORDER BY name LIMIT 1").fetchone()[0]
        account = conn.execute("SELECT account_id::text FROM investment.daily_performance LIMIT 1").fetchone()[0]
        year = fund.Filters(date(2025, 2, 1), date(2026, 1, 31))
        month = fund.Filters(date(2026, 1, 2), date(2026, 1, 31))
        one_product = fund.Filters(date(2025, 2, 1), date(2026, 1, 31), product=product)
        cases = {
            "book (a year)": lambda: fund.book(conn, year),
            "book (a year, one product)": lambda: fund.book(conn, one_product),
            "performance (a year)": lambda: fund.performance(fund.book(conn, year)),
            "spread and best/worst (one date)": lambda: fund.return_spread(conn, month, date(2026, 1, 15)),
            "distributions (a year)": lambda: fund.distributions(conn, year),
            "payouts and waiting (a year)": lambda: (fund.payouts(conn, year), fund.waiting(conn, year)),
            "data quality (a year)": lambda: fund.data_quality(conn, year),
            "an account (its days, distributions, withdrawals, transactions)":
                lambda: fund.account(conn, account, year),
            "the whole page's data and HTML (30 days, no jobs section)":
                lambda: render({**fund_view.sections(conn, month, None, account),
                                "jobs": {"status": "ok", "table": {"columns": [], "rows": []}}},
                               month, fund.products(conn).to_dict("records"), account),
        }
        timings = {}
        for name, call in cases.items():
            call()  # warm
            samples = []
            for _ in range(30):
                started = time.perf_counter()
                call()
                conn.rollback()
                samples.append((time.perf_counter() - started) * 1000)
            samples.sort()
            timings[name] = {"p50_ms": round(statistics.median(samples), 1),
                             "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1)}
        rows = conn.execute("SELECT count(*) FROM investment.book_daily").fetchone()[0]
    per_day = statistics.median(refresh_costs)
    return {"summary_refresh_per_day_s": round(per_day, 3), "summary_refresh_max_s": round(max(refresh_costs), 3),
            "summary_refresh_per_day_365_s": round(statistics.median(year_costs), 3),
            "summary_refresh_max_365_s": round(max(year_costs), 3),
            **grown,
            "daily_job_seconds": daily_job_seconds,
            "summary_share_of_daily_job_pct": round(100 * per_day / daily_job_seconds, 1),
            "book_daily_rows": rows, "sections": timings}


def bench_cleanup(server) -> dict:  # noqa: ANN001
    """The cleanup step over 1M transactions, 100k of them failed and old (run as the DAG's task
    runs it, without Airflow around it): total time and the longest single batch transaction."""
    import psycopg

    from investment_jobs.jobs import cleanup

    dsn, _ = prepare_book(server, "ij_bench_cleanup", 1_000)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO investment.transactions (account_id, user_id, type, amount, status, created_at)
               SELECT a.id, a.user_id, 'withdrawal', 10,
                      CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END,
                      CASE WHEN g % 10 = 0 THEN timestamptz '2025-10-01' ELSE timestamptz '2026-05-20' END
               FROM generate_series(1, 1000000) g
               JOIN LATERAL (SELECT id, user_id FROM investment.accounts OFFSET (g % 1000) LIMIT 1) a ON true""")
        conn.commit()
        conn.execute("ANALYZE")
        started = time.perf_counter()
        result = cleanup.delete_failed_transactions(conn, date(2026, 6, 7), 90, 5000, "UTC", dry_run=False)
        result["seconds"] = round(time.perf_counter() - started, 3)
        result["remaining"] = conn.execute("SELECT count(*) FROM investment.transactions").fetchone()[0]
    result["batch_size"] = 5000
    return result


def bench_stack(server, engine_url: str, shards: int = 1, workers: int = 2,  # noqa: ANN001
                template: str = "ij_bench_100000", postgres: str = "postgresql://postgres@127.0.0.1:5432") -> dict:
    """The business date of ``template`` (the book the in-process run used) on the Celery stack
    (``workers`` workers), from a copy with only the previous day stored: a one-day backfill, timed
    from the task instances as in-process; its pull in ``shards`` mapped tasks (SHARDS)."""
    import psycopg

    from investment_jobs_dev.stack import Stack, check_services

    check_services(postgres, "redis://127.0.0.1:6379")
    dsn = server.fresh_database("ij_bench_stack", template=template)
    server.fresh_database("ij_bench_stack_meta")
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM investment.daily_performance WHERE date >= %s", (DAY,))
        conn.execute("ANALYZE")
    stack = Stack(home=WORK / "stack-airflow", metadata_db="ij_bench_stack_meta", investment_dsn=dsn, redis_db=12,
                  workers=workers, postgres=postgres, extra_env={"AIRFLOW_CONN_ML_ENGINE": engine_url, "ML_ENGINE_PAGE_SIZE": str(PAGE_SIZE),
                                        "ENABLE_CRON_JOBS": "false", "CRON_TIMEZONE": "UTC", "SHARDS": str(shards)})
    try:
        stack.start()
        stack.airflow("dags", "unpause", "daily_performance")
        started = time.perf_counter()
        # the bounds are business dates, both included (issue 14): exactly D
        stack.airflow("backfill", "create", "--dag-id", "daily_performance", "--from-date", DAY.isoformat(),
                      "--to-date", DAY.isoformat())
        while True:
            with psycopg.connect(stack.metadata_dsn) as conn:
                state = conn.execute("SELECT state FROM dag_run WHERE backfill_id IS NOT NULL").fetchone()
                if state and state[0] in ("success", "failed"):
                    tis = conn.execute("SELECT task_id || CASE WHEN map_index >= 0 AND %s > 1 THEN "
                                       "format('[%%s]', map_index) ELSE '' END, start_date, end_date "
                                       "FROM task_instance ORDER BY start_date", (shards,)).fetchall()
                    break
            time.sleep(0.5)
        wall = time.perf_counter() - started
    finally:
        stack.stop()
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT count(*) FROM investment.daily_performance WHERE date = %s", (DAY,)).fetchone()[0]
    server.drop_database("ij_bench_stack_meta")
    server.drop_database("ij_bench_stack")
    job = (max(t[2] for t in tis) - min(t[1] for t in tis)).total_seconds()
    return {"state": state[0], "accounts": stored, "job_seconds": round(job, 3),
            "wall_seconds_from_backfill_create": round(wall, 3), "workers": workers, "shards": shards,
            "tasks": {t[0]: round((t[2] - t[1]).total_seconds(), 3) for t in tis}}


MILLION = 1_000_000
# The million-account stage runs on its own cluster sized like a deployment of that size (the
# shared server here has 128 MB of shared buffers, and must not be reconfigured): a month's daily
# partition and the accounts table in memory, checkpoints spaced out. Durability is unchanged
# (fsync, synchronous_commit and full_page_writes stay on).
SIZED = {"shared_buffers": "6GB", "effective_cache_size": "16GB", "maintenance_work_mem": "1GB",
         "work_mem": "64MB", "max_wal_size": "16GB", "checkpoint_timeout": "30min", "wal_buffers": "64MB",
         "random_page_cost": "1.1", "jit": "off"}


def earlier_million(results: dict) -> dict | None:
    """The million-account figures of an earlier run, in bench_million's shape (BENCH_MILLION=0)."""
    d, m = results.get("daily_performance", {}), results.get("monthly_distribution", {})
    if str(MILLION) not in d:
        return None
    return {"accounts": MILLION, "cluster": d["million_cluster"], "in_process": d[str(MILLION)],
            "stack_1_workers": d["stack_million_1_worker"], "stack_2_workers": d["stack_million_2_workers"],
            "monthly": m.get(str(MILLION)), "monthly_measured_at": m.get("million_measured_at"),
            "from_an_earlier_run": d.get("million_measured_at", "an earlier run")}


def _measured(what: str, measure: Callable[[], dict]) -> dict:
    """One figure of the million stage, or the reason it has none: one failed part (a stack that
    did not come up) does not cost the stage its other figures."""
    try:
        result = measure()
    except Exception as exc:  # noqa: BLE001 - written into the results instead
        log(f"{what}: failed: {exc!r}")
        return {"error": repr(exc)[:500]}
    log(f"{what}: {json.dumps(result)}")
    return result


def bench_million(engine: Engine, accounts: int = MILLION) -> dict:
    """daily_performance at a million accounts, in-process and on the Celery stack with 1 worker
    (SHARDS=1) and 2 (SHARDS=2), then monthly_distribution over them × 31 days: on an own cluster."""
    import psycopg

    from investment_jobs_dev.book import engine_registration
    from investment_jobs_dev.postgres import PgServer
    from investment_jobs_dev.soak.cluster import OwnPostgres

    pg = OwnPostgres(settings=SIZED)
    pg.start()
    server = PgServer(host="127.0.0.1", port=pg.port)
    name = "ij_bench_1m"
    previous = DAY - timedelta(days=1)
    out: dict = {"cluster": dict(SIZED), "accounts": accounts}
    try:
        log(f"{accounts:,}: seeding on an own cluster (127.0.0.1:{pg.port}, shared_buffers {SIZED['shared_buffers']})")
        started = time.perf_counter()
        dsn, book = prepare_book(server, name, accounts)
        engine.load_book(engine_registration(book), [previous, DAY], shards=2)
        log(f"{accounts:,}: book and engine pages ready in {time.perf_counter() - started:.0f} s (untimed)")
        def in_process() -> dict:
            daily = run_dag(dsn, previous, DAY)
            with psycopg.connect(dsn) as conn:
                daily["accounts"] = conn.execute("SELECT count(*) FROM investment.daily_performance WHERE date = %s",
                                                 (DAY,)).fetchone()[0]
            daily["accounts_per_s"] = round(daily["accounts"] / daily["job_seconds"], 1)
            return daily

        out["in_process"] = _measured(f"{accounts:,} in-process", in_process)
        for workers in (1, 2):
            out[f"stack_{workers}_workers"] = _measured(
                f"{accounts:,} on the stack, {workers} worker(s), SHARDS={workers}",
                lambda w=workers: bench_stack(server, engine.url, shards=w, workers=w, template=name,
                                              postgres=pg.admin_url))
        server.drop_database(name)
        log(f"monthly_distribution: {accounts:,} accounts x 31 stored days")
        out["monthly"] = _measured(f"monthly at {accounts:,}",
                                   lambda: bench_monthly(server, accounts, name="ij_bench_monthly_1m"))
    finally:
        pg.destroy()
    return out


STRIPE_PORT = 12191
STRIPE_KEY = "sk_test_bench"


def bench_withdrawals(server, requests_count: int = 1000, connect: bool = False,  # noqa: ANN001
                      rate_limit: int = 0) -> dict:
    """withdrawal_processing paying ``requests_count`` approved requests through the Stripe stand-in
    (its own process), beside the original's pattern (per request: read the account, create the
    payout without a key, then write) over the same requests on a copy of the database. With
    ``connect``, every request is a Connect payment (a transfer, then a payout on the investor's
    connected account); the original had no such path, so it has no baseline. With ``rate_limit``,
    the stand-in refuses what goes over that many requests a second with 429s (as Stripe does) and
    the job paces its calls at 90 % of it (``STRIPE_CALLS_PER_SECOND``); no baseline then either."""
    import psycopg

    from investment_jobs_dev.book import connected_accounts_in, seed_withdrawals

    name = ("ij_bench_withdrawals_connect" if connect else
            "ij_bench_withdrawals_paced" if rate_limit else "ij_bench_withdrawals")
    dsn, book = prepare_book(server, name, 1_000)
    with psycopg.connect(dsn) as conn:
        seed_withdrawals(conn, book, SEED, requests_count, connect_share=1.0 if connect else 0.0)
        accounts = connected_accounts_in(conn)
        # Pending until the warm-up run is over; the timed run pays them.
        conn.execute("UPDATE investment.withdrawal_requests SET status = 'pending'")
        conn.commit()
    base_dsn = None if connect or rate_limit else server.fresh_database("ij_bench_withdrawals_base", template=name)
    paced = {"STRIPE_CALLS_PER_SECOND": str(round(rate_limit * 0.9, 2)), "STRIPE_RATE_LIMIT_ATTEMPTS": "4",
             "WITHDRAWAL_BATCH_SIZE": str(requests_count)} if rate_limit else {}
    from investment_jobs_dev.standins.admin import StripeAdmin
    from investment_jobs_dev.standins.launcher import STRIPE, StandIn

    stand_in = StandIn(STRIPE, STRIPE_PORT, WORK / "stripe.log", env={"STRIPE_STANDIN_API_KEY": STRIPE_KEY}).start()
    url = stand_in.url
    try:
        if accounts:
            StripeAdmin(url).connected_accounts(*accounts)
        if rate_limit:
            StripeAdmin(url).faults(rate_limit=rate_limit)
        conn_json = json.dumps({"conn_type": "stripe", "host": url, "password": STRIPE_KEY})
        os.environ["AIRFLOW_CONN_STRIPE_DEFAULT"] = conn_json
        os.environ["BENCH_BETWEEN_SQL"] = "UPDATE investment.withdrawal_requests SET status = 'approved'"
        os.environ.update(paced)
        try:
            result = run_dag(dsn, date(2026, 1, 5), date(2026, 1, 5), dag_id="withdrawal_processing")
        finally:
            os.environ.pop("BENCH_BETWEEN_SQL")
            for key in paced:
                os.environ.pop(key)
        with psycopg.connect(dsn) as conn:
            result["completed"] = conn.execute(
                "SELECT count(*) FROM investment.withdrawal_requests WHERE status = 'completed'").fetchone()[0]
        result["requests"] = requests_count
        result["requests_per_s"] = round(result["completed"] / result["job_seconds"], 1)
        stats = StripeAdmin(url).stats()["stats"]
        result["stripe_calls"] = {k: v for k, v in sorted(stats.items()) if k.startswith(("POST", "GET"))}
        if rate_limit:
            traffic = StripeAdmin(url).stats().get("traffic", {})
            with psycopg.connect(dsn) as conn:  # one payout per request: the unique index holds it, counted
                payouts = conn.execute("SELECT count(DISTINCT payout_id) FROM investment.withdrawal_requests "
                                       "WHERE payout_id IS NOT NULL").fetchone()[0]
            result.update({
                "rate_limit": rate_limit, "calls_per_second": round(rate_limit * 0.9, 2),
                "target_seconds": round(1.5 * requests_count / rate_limit, 1),
                "stripe_payouts": stats.get("POST /v1/payouts", 0), "distinct_payout_ids": payouts,
                "rate_limited_429": stats.get("rate limited 429", 0),
                "max_payouts_in_a_second": traffic.get("max_payouts_in_a_second"),
                "max_requests_in_flight": traffic.get("max_in_flight"),
            })
        if base_dsn is not None:
            StripeAdmin(url).reset()
            result["baseline"] = withdrawals_baseline(base_dsn, url)
    finally:
        stand_in.stop()
        os.environ.pop("AIRFLOW_CONN_STRIPE_DEFAULT", None)
        if base_dsn is not None:
            server.drop_database("ij_bench_withdrawals_base")
    return result


def withdrawals_baseline(dsn: str, url: str) -> dict:
    """The original's loop (section 3.4), as fast as it goes: not safe, only a yardstick."""
    import psycopg
    from stripe import StripeClient

    client = StripeClient(STRIPE_KEY, base_addresses={"api": url})
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        requests_ = conn.execute(
            "SELECT id, account_id, amount, destination_details FROM investment.withdrawal_requests").fetchall()
        for request_id, account_id, amount, details in requests_:
            balance, total, user_id = conn.execute(
                "SELECT current_balance, total_withdrawn, user_id FROM investment.accounts WHERE id = %s",
                (account_id,)).fetchone()
            payout = client.v1.payouts.create(params={
                "amount": int(amount * 100), "currency": "usd", "destination": details["bank_account_id"],
                "metadata": {"withdrawal_request_id": str(request_id)}})
            conn.execute("UPDATE investment.accounts SET current_balance = %s, total_withdrawn = %s WHERE id = %s",
                         (balance - amount, total + amount, account_id))
            tx = conn.execute(
                """INSERT INTO investment.transactions (account_id, user_id, type, amount, balance_before,
                       balance_after, withdrawal_request_id, withdrawal_method, withdrawal_destination_id,
                       status, processed_at)
                   VALUES (%s, %s, 'withdrawal', %s, %s, %s, %s, 'stripe_payout', %s, 'completed', now())
                   RETURNING id""",
                (account_id, user_id, amount, balance, balance - amount, request_id, payout.id)).fetchone()[0]
            conn.execute("UPDATE investment.withdrawal_requests SET status = 'completed', processed_at = now(), "
                         "transaction_id = %s WHERE id = %s", (tx, request_id))
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "requests_per_s": round(len(requests_) / seconds, 1)}


def dag_parse_seconds() -> float:
    code = ("import time; from airflow.dag_processing.dagbag import DagBag; t = time.perf_counter(); "
            f"b = DagBag(dag_folder={str(ROOT / 'dags')!r}); "
            "assert not b.import_errors, b.import_errors; print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], env=base_env(), capture_output=True, text=True,
                         check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 3)  # float-ok: seconds


def main() -> int:
    from investment_jobs_dev.book import engine_registration
    from investment_jobs_dev.postgres import local_or_embedded_postgres

    if "--render" in sys.argv:  # BENCHMARKS.md again from bench/results.json (its text changed, not the figures)
        write_markdown(json.loads(RESULTS.read_text()))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    server = local_or_embedded_postgres(WORK / "pg")
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=base_env(),
                   check=True, capture_output=True)
    engine = Engine()
    previous = DAY - timedelta(days=1)
    ours: dict[str, dict] = {}
    try:
        for accounts in (10_000, 100_000):
            log(f"seeding {accounts} accounts")
            dsn, book = prepare_book(server, f"ij_bench_{accounts}", accounts)
            more = MORE_DAYS if accounts == 100_000 else ()
            engine.load_book(engine_registration(book), [previous, DAY, *more])
            log(f"{accounts}: daily_performance for {previous} (warm-up, untimed), then {DAY} (timed)"
                + (f" and the {len(more)} days after it (the median of the three)" if more else ""))
            result = run_dag(dsn, previous, DAY, more_days=more)
            import psycopg

            with psycopg.connect(dsn) as conn:
                stored = conn.execute("SELECT count(*) FROM investment.daily_performance WHERE date = %s",
                                      (DAY,)).fetchone()[0]
            result["accounts"] = stored
            result["accounts_per_s"] = round(stored / result["job_seconds"], 1)
            ours[str(accounts)] = result
            log(f"{accounts}: {json.dumps(result)}")

        log("the same 100k business date on the Celery stack, 2 workers: SHARDS=1, then SHARDS=2")
        engine.admin.warm(DAY, PAGE_SIZE, 2)
        stack_result = bench_stack(server, engine.url)
        log(f"stack: {json.dumps(stack_result)}")
        stack_shards = bench_stack(server, engine.url, shards=2)
        log(f"stack, 2 shards: {json.dumps(stack_shards)}")

        log("baseline (the original's per-account pattern) at 10k")
        dsn, book = prepare_book(server, "ij_bench_baseline", 10_000)
        engine.load_book(engine_registration(book), [previous - timedelta(days=1), previous, DAY])
        run_dag(dsn, previous - timedelta(days=1), previous)  # the previous day is stored, as for ours
        base = baseline(dsn, engine.url, DAY)
        log(f"baseline: {json.dumps(base)}")

        log("floors (fetch + Decimal + COPY + one upsert) at 100k: the project's, then the tight one")
        dsn, book = prepare_book(server, "ij_bench_floor", 100_000)
        engine.load_book(engine_registration(book), [previous, DAY, *MORE_DAYS])
        low = floor(dsn, DAY)
        log(f"project's floor: {json.dumps(low)}")
        tight = tight_floor(dsn, DAY)
        log(f"tight floor: {json.dumps(tight)}")
        log("monthly_distribution: 100k accounts x 31 stored days")
        monthly_result = bench_monthly(server)
        log(f"monthly: {json.dumps(monthly_result)}")
        log("fund view: the summaries' cost per business date, each section's data time over a year")
        fund_result = bench_fund(server.dsn("ij_bench_monthly"), ours["100000"]["job_seconds"])
        log(f"fund view: {json.dumps(fund_result)}")
        log("data_cleanup: 1M transactions, 10% old failed ones")
        cleanup_result = bench_cleanup(server)
        log(f"cleanup: {json.dumps(cleanup_result)}")
        log("withdrawal_processing: 1,000 approved requests through the Stripe stand-in")
        withdrawal_result = bench_withdrawals(server)
        log(f"withdrawals: {json.dumps(withdrawal_result)}")
        log("withdrawal_processing: 1,000 Connect withdrawals (a transfer, then a payout on the connected account)")
        connect_result = bench_withdrawals(server, connect=True)
        log(f"connect withdrawals: {json.dumps(connect_result)}")
        log(f"withdrawal_processing: {PACED_REQUESTS:,} approved requests, Stripe limited to {RATE_LIMIT}/s (429 beyond)")
        paced_result = bench_withdrawals(server, PACED_REQUESTS, rate_limit=RATE_LIMIT)
        log(f"paced withdrawals: {json.dumps(paced_result)}")
        million = None
        if os.environ.get("BENCH_MILLION", "1") != "0":  # BENCH_MILLION=0 skips the million-account stage
            try:
                million = bench_million(engine, int(os.environ.get("BENCH_MILLION_ACCOUNTS", str(MILLION))))
            except Exception as exc:  # noqa: BLE001 - the other figures are still written
                log(f"the million-account stage failed: {exc!r}; keeping the last figures, if any")
        if million is None and RESULTS.exists():  # keep the last measured million figures, marked as such
            million = earlier_million(json.loads(RESULTS.read_text()))
        parse = dag_parse_seconds()
    finally:
        engine.stop()
        for name in ("ij_bench_10000", "ij_bench_100000", "ij_bench_baseline", "ij_bench_floor",
                     "ij_bench_monthly", "ij_bench_cleanup", "ij_bench_withdrawals",
                     "ij_bench_withdrawals_connect", "ij_bench_withdrawals_paced"):
            server.drop_database(name)

    daily = {
        **ours,
        "baseline_10000": base,
        "floor_100000": low,
        "speedup": round(ours["100000"]["accounts_per_s"] / base["accounts_per_s"], 1),
        "tight_floor_100000": tight,
        "floor_ratio": round(ours["100000"]["job_seconds"] / tight["seconds"], 2),
        "project_floor_ratio": round(ours["100000"]["job_seconds"] / low["seconds"], 2),
        "stack_100000": stack_result,
        "stack_100000_shards_2": stack_shards,
        **({str(million["accounts"]): million["in_process"], "million_cluster": million["cluster"],
            "stack_million_1_worker": million["stack_1_workers"], "stack_million_2_workers": million["stack_2_workers"],
            "million_measured_at": million.get("from_an_earlier_run")
            or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}  # clock-ok: when the figures were measured
           if million else {}),
        "business_date": DAY.isoformat(),
        "page_size": PAGE_SIZE,
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["daily_performance"] = daily
    results["monthly_distribution"] = {"100000": monthly_result,
                                       **({str(million["accounts"]): million["monthly"]} if million else {}),
                                       **({"million_measured_at": million["monthly_measured_at"]}
                                          if million and million.get("monthly_measured_at") else {})}
    results["data_cleanup"] = {"1000000": cleanup_result}
    results["withdrawal_processing"] = {"1000": withdrawal_result, "connect_1000": connect_result,
                                        f"paced_{PACED_REQUESTS}": paced_result}
    results["fund_view"] = fund_result
    results["dag_parse_seconds"] = parse
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "postgres": server.host}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results)
    log(f"wrote {RESULTS.relative_to(ROOT)} and BENCHMARKS.md")
    return 0


def measured_again_why(results: dict) -> str:
    """Why the monthly figures were measured on their own after the run (results.json says)."""
    return results["monthly_distribution"].get("measured_again_why", "after a change to the monthly job alone")


def million_section(results: dict) -> str:
    """BENCHMARKS.md's section on a million accounts (the stage BENCH_MILLION=0 skips). A part
    that failed shows as failed, with its reason in bench/results.json."""
    d = results["daily_performance"]
    one = d.get(str(MILLION))
    if one is None:
        return "## A million accounts\n\nNot measured in this run (`BENCH_MILLION=0`)."
    s1, s2 = d["stack_million_1_worker"], d["stack_million_2_workers"]
    m = results["monthly_distribution"].get(str(MILLION))
    cluster = ", ".join(f"`{k} = {v}`" for k, v in d["million_cluster"].items())

    def cell(r: dict, key: str, form: str) -> str:
        return "failed" if "error" in r else format(r[key], form)

    def per_task(r: dict) -> str:
        return "failed (its error is in bench/results.json)" if "error" in r else \
            ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["tasks"].items()))

    rss = "failed" if "error" in one else f"{one['peak_rss_mb']:.0f} vs {d['100000']['peak_rss_mb']:.0f}"
    if m is None or "error" in m:
        monthly = f"""
`monthly_distribution` over a million accounts × 31 days: {'failed in this run (its error is in bench/results.json)' if m else 'not measured'}.
"""
    else:
        measured_again = results["monthly_distribution"].get("million_measured_at")
        again = (f", measured again on its own {measured_again} {measured_again_why(results)} "
                 "(the same book and cluster settings, a fresh cluster)") if measured_again else ""
        monthly = f"""
`monthly_distribution` for 2026-01 over the same million accounts, each with its 31 days stored
({m['daily_rows']:,} daily rows; {m['distributions']:,} distributions written){again}: job time
**{m['job_seconds']:.1f} s** (target ≤ 60 s), peak RSS {m['peak_rss_mb']:.0f} MiB. Per task (s):
{per_task(m)}.
"""
    return f"""## A million accounts — one business date, then its month

Measured {d.get('million_measured_at', 'in this run')} (`BENCH_MILLION=0` skips this stage, about
half of `make bench`, and keeps the last figures).

On the benchmark's own PostgreSQL cluster (the `pgserver` wheel's PostgreSQL, the same machine),
sized for a book of this size: {cluster}; durability as shipped. A fresh book of {MILLION:,}
accounts (the same plan as above), the previous day stored first.

| | in-process (`dag.test`) | Celery stack, 1 worker, `SHARDS=1` | Celery stack, 2 workers, `SHARDS=2` | target |
|---|---:|---:|---:|---|
| accounts stored | {cell(one, 'accounts', ',')} | {cell(s1, 'accounts', ',')} | {cell(s2, 'accounts', ',')} | |
| job time (s) | **{cell(one, 'job_seconds', '.1f')}** | {cell(s1, 'job_seconds', '.1f')} | {cell(s2, 'job_seconds', '.1f')} | ≤ 30 s |
| peak RSS (MiB), 1M vs 100k | {rss} | | | < 1 GiB, flat |

Per task (s), in-process: {per_task(one)}.
Stack, 1 worker: {per_task(s1)}. Stack, 2 workers: {per_task(s2)}.
{million_reading(one, s1, s2, d['100000'])}
{monthly}"""


def million_reading(one: dict, s1: dict, s2: dict, hundred_k: dict) -> str:
    """What the million figures say against the targets, and where the time goes."""
    if any("error" in r for r in (one, s1, s2)):
        return "A part of the stage failed, so no reading of it here."
    pull = [v for k, v in s2["tasks"].items() if k.startswith("pull_ml_performance")]
    rest = sum(v for k, v in s1["tasks"].items() if not k.startswith("pull_ml_performance"))
    scale = {k: one["tasks"][k] / hundred_k["tasks"][k]
             for k in ("pull_ml_performance", "store_day", "persist", "compute_returns")  # the chain before store_day
             if k in one["tasks"] and hundred_k["tasks"].get(k)}
    met = "met" if one["job_seconds"] <= 30 else "**not met**"
    if one["peak_rss_mb"] < 1024:
        memory = (f"met ({one['peak_rss_mb']:.0f} MiB, {hundred_k['peak_rss_mb']:.0f} MiB at 100k): a pull holds one "
                  "page of the listing at a time and everything after it is SQL, so the job's memory hardly grows "
                  "with the book")
    else:
        memory = f"**not met** ({one['peak_rss_mb']:.0f} MiB, {hundred_k['peak_rss_mb']:.0f} MiB at 100k)"
    growth = ", ".join(f"{k} {v:.1f}×" for k, v in scale.items())
    return f"""
Against the targets: 1M in ≤ 30 s is {met} ({one['job_seconds']:.1f} s in-process); peak memory
under 1 GiB is {memory}. Ten times the accounts cost each step, against its 100k time in this
run: {growth}. On the stack, two shards on two workers cut the pull from
{s1['tasks'].get('pull_ml_performance', 0):.1f} s to {max(pull, default=0):.1f} s (the slower shard;
{', '.join(f'{v:.1f}' for v in pull)} s side by side, sharing the two cores with PostgreSQL and the
engine stand-in); the rest of the chain ({rest:.1f} s with one worker) is set-based SQL in one
database, the same with any number of workers. `docs/deploy.md` turns these into what N workers
would give."""


def write_markdown(results: dict) -> None:
    d = results["daily_performance"]
    w = results["withdrawal_processing"]["1000"]
    wc = results["withdrawal_processing"]["connect_1000"]
    wp = results["withdrawal_processing"][f"paced_{PACED_REQUESTS}"]
    fv = results["fund_view"]
    fund_rows = "\n".join(f"| {name} | {t['p50_ms']:.1f} | {t['p95_ms']:.1f} |" for name, t in fv["sections"].items())
    small, big = d["10000"], d["100000"]
    sh = d["stack_100000_shards_2"]
    tasks = sorted(big["tasks"])
    task_rows = "\n".join(f"| {t} | {small['tasks'].get(t, 0):.2f} | {big['tasks'].get(t, 0):.2f} |"
                          for t in tasks)
    # A change to the code after the run (said in results.json, dropped by the next make bench run)
    code_note = f"\n**Code since this run.** {results['code_note']}\n" if results.get("code_note") else ""
    again = results["monthly_distribution"]["100000"].get("measured_again_at")  # a stage measured on its own
    month_again = (f"\n\nMeasured again on its own {again} {measured_again_why(results)} (the rest "
                   "of this file is the earlier run's).") if again else ""
    text = f"""# Benchmarks

Measured by `make bench` (bench/run.py) on this machine ({results['machine']['cpus']} cores, Python
{results['machine']['python']}, PostgreSQL at `{results['machine']['postgres']}`), all in one run.
Raw figures: `bench/results.json`. Re-run `make bench` to refresh both files. The machines these
sessions run on differ in speed by up to 2× (the original's loop and the floor move with them), so
compare each figure with its baseline from the same run, not with an earlier run's absolute time.

## daily_performance — one business date ({d['business_date']})
{code_note}
The ML engine stand-in runs as its own process with the date's pages rendered before timing.
Each size runs in a fresh process: `dag.test()` for the previous day first (untimed: it stores
the previous day, the steady state, and pays Airflow's one-time in-process start-up, about 3 s,
which a long-running worker pays once), then the timed `dag.test()` for the date. *Job time* is
first task start to last task end from Airflow's task instances, *wall* is the whole timed
`dag.test()` call, *peak RSS* is that process's (Airflow included, both runs).

| | 10k accounts | 100k accounts |
|---|---:|---:|
| accounts stored | {small['accounts']} | {big['accounts']} |
| job time (s) | {small['job_seconds']:.2f} | {big['job_seconds']:.2f} |
| end-to-end wall (s) | {small['wall_seconds']:.2f} | {big['wall_seconds']:.2f} |
| accounts / s | {small['accounts_per_s']:,.0f} | {big['accounts_per_s']:,.0f} |
| peak RSS (MiB) | {small['peak_rss_mb']:.0f} | {big['peak_rss_mb']:.0f} |

Per task (s):

| task | 10k | 100k |
|---|---:|---:|
{task_rows}

On the Celery stack (`make stack`: PostgreSQL metadata, Redis broker, scheduler, DAG processor,
API server, 2 Celery workers), the same 100k business date from a copy of the same book, as a
one-day backfill:

| | in-process (`dag.test`) | Celery stack, 2 workers | the same, `SHARDS=2` |
|---|---:|---:|---:|
| accounts stored | {big['accounts']} | {d['stack_100000']['accounts']} | {sh['accounts']} |
| job time (s): first task start to last task end | {big['job_seconds']:.2f} | {d['stack_100000']['job_seconds']:.2f} | {sh['job_seconds']:.2f} |
| from `backfill create` to the run's end (s) | | {d['stack_100000']['wall_seconds_from_backfill_create']:.2f} | {sh['wall_seconds_from_backfill_create']:.2f} |

Per task on the stack (s), in start order: {', '.join(f"{k} {v:.2f}" for k, v in d['stack_100000']['tasks'].items())}.
With `SHARDS=2`: {', '.join(f"{k} {v:.2f}" for k, v in sh['tasks'].items())}.
The difference from in-process is the scheduler and Celery handing each task to a worker, and
each task starting its own process. One business date is a chain of tasks; only the pull is
split (`SHARDS`): its two shards run at once on the two workers, each fetching and validating half
the listing, while the rest of the chain (set-based SQL in PostgreSQL) runs once.

Beside it, in the same run:

| | figure | target |
|---|---:|---|
| baseline: the original's per-account pattern, 10k accounts | {d['baseline_10000']['accounts_per_s']:,.0f} accounts/s | |
| **tight floor**: the same pages, exact Decimal, COPY into an UNLOGGED table, one upsert into a table with only the unique key, 100k | {d['tight_floor_100000']['seconds']:.2f} s (fetch, parse and COPY {d['tight_floor_100000']['fetch_parse_copy_seconds']:.2f} s; the upsert {d['tight_floor_100000']['upsert_seconds']:.2f} s) | |
| the project's earlier floor (the same, upserting into `daily_performance` itself), 100k | {d['floor_100000']['seconds']:.2f} s (fetch, parse and COPY {d['floor_100000']['fetch_parse_copy_seconds']:.2f} s; the upsert {d['floor_100000']['upsert_seconds']:.2f} s) | |
| **speed-up** (ours at 100k ÷ baseline, accounts/s) | **{d['speedup']}×** | ≥ 20× |
| **floor ratio** (job time ÷ tight floor, 100k; each the median of D and the two days after it) | **{d['floor_ratio']}** (job {', '.join(f'{x:.2f}' for x in big.get('job_seconds_each', [big['job_seconds']]))} s; tight floor {', '.join(f'{x:.2f}' for x in d['tight_floor_100000'].get('seconds_each', [d['tight_floor_100000']['seconds']]))} s) | ≤ 2.5 |
| ratio to the project's earlier floor | {d['project_floor_ratio']} | |
| job time at 100k | {big['job_seconds']:.2f} s | ≤ 10 s |
| peak memory 100k vs 10k | {big['peak_rss_mb']:.0f} vs {small['peak_rss_mb']:.0f} MiB | < 1 GiB, about equal |
| partitioning by month: the tight floor's upsert into the same table partitioned by month | {d['tight_floor_100000']['upsert_into_month_partitions_seconds']:.2f} s (unpartitioned {d['tight_floor_100000']['upsert_seconds']:.2f} s) | |

The tight floor is the least work that stores D: no validation, no rejects, no chain, no account
update, no summaries, no Airflow. The job does all of those: the pull (one task per shard), then
`store_day`, which matches, chains and writes D, chains later days again, rewrites D's summaries
and moves the accounts, in one transaction; the ratio is what they cost together. The earlier floor upserted
into `daily_performance`, whose foreign keys PostgreSQL checked row by row; migration 0012 checks
the same references once per statement, so that floor now mostly measures the table's date index,
its triggers and its partitioning. Migration 0013 made the nightly update of every active
account heap-only (`accounts` at fillfactor 50: a page keeps room for a new version of each of its
rows, so no index is touched) and stamps `updated_at` in the statement instead of a trigger call
per row; the update reads D's staged rows (`store_day` writes and reads them under one lock):
about 0.35 s at 100k, where it was 1.2–1.4 s. Each task also returns one XCom (TaskFlow had unrolled every
`-> dict` into an XCom per key as well). A date with no stored row yet (the forward run) is written
by a plain INSERT under the chain lock rather than the upsert, whose conflict handling was a quarter
of its time; the fund view's best and worst accounts of D are a top-N heapsort per product instead
of two sorts of the whole day; and the engine's next page is fetched while the current one is
validated (nothing on loopback; 0.5 s of a 100k pull with the stand-in's 30 ms latency per page).
The pull runs with Python's cyclic collector paused (`investment_jobs/bulk.py`): a page's 10,000
dicts set off collections, and each full one walked every object of the worker process, about
800k of Airflow's, for 0.3 s, once or twice a date; the pages hold no cycles, so reference counting
frees them either way (the floors get the same pause). A page whose items all have contracts.md's
JSON types decodes into typed structs (msgspec) rather than a dict per item; any other page reads
as plain JSON and every item gets the full checks. Matching, chaining, the upsert and the accounts
were three tasks and are one (`store_day`): two task hand-offs fewer per date. The staging items
are typed as the columns they feed, so the pull's COPY does the numeric coercion that D's insert
did, and their ANALYZE samples 3,000 rows, not 30,000.
Where the job's time goes, step by step and statement by
statement, without Airflow: `python -m bench.profile_daily 100000` (with `PROFILE_STATEMENTS=1`,
every statement over 30 ms; with `--cprofile pull`, the Python profile of a step).

{million_section(results)}

## monthly_distribution — one period (2026-01), 100k accounts × 31 stored days

| | figure | target |
|---|---:|---|
| daily rows read | {results['monthly_distribution']['100000']['daily_rows']:,} | |
| distributions written | {results['monthly_distribution']['100000']['distributions']:,} | |
| job time (s) | {results['monthly_distribution']['100000']['job_seconds']:.2f} | ≤ 30 s |
| end-to-end wall (s) | {results['monthly_distribution']['100000']['wall_seconds']:.2f} | |
| peak RSS (MiB) | {results['monthly_distribution']['100000']['peak_rss_mb']:.0f} | |

Per task (s): {', '.join(f"{k} {v:.2f}" for k, v in sorted(results['monthly_distribution']['100000']['tasks'].items()))}.{month_again}

`distribute` writes the month in one statement; migration 0014 checks the references of its
distributions and ledger rows once per statement instead of four foreign keys row by row (1.1 s
of that statement at 100k accounts, measured without Airflow: the step went from 3.8 to 2.7 s).
Migration 0016 keeps the check of a transaction's distribution a probe by key per row, the plan the
planner chose anyway (1.9–2.0 s either way for 770k rows at 1M): after a rolled-back month, vacuum
can leave `distributions` looking empty, and the flattened check then compared each new
transaction with the whole table (24k rows: 9.8 s; at 1M it did not finish in 7 minutes).
Migration 0017 checks a distribution's `transaction_id` in the same statement trigger instead of
a foreign key deferred to commit: at 1M, the trigger went from 2.3 to 4.8 s and the commit from
5.4–7.2 s to nothing (measured without Airflow, EXPLAIN ANALYZE's trigger times).
`assess_accounts` aggregates the month's rows into count, first and last day and the sum of the
returns only, and takes the first day's opening and the last day's closing from two dates' rows
(P's first and last day, each in one hash join; an account whose first or last stored day is
another looks its row up by key). The min/max of date-led arrays it used before made the
aggregate's state large: at 1M accounts × 31 days it spilled 1.5 GB and the planner read the month
through its key index instead, 15–18 s for the statement against 9.8 s now, the same rows (the task
went 17.0 → 11.6 s at 1M; at 100k, whose aggregate fits in memory, 3.84 → 3.60 s in `make bench`).
It looks for missing days only for the accounts held back, by their key (it hashed the whole month's rows: 0.5 s at 100k when none is held).

## data_cleanup — 1,000,000 transactions, 10% of them failed and older than the window

The delete step as the DAG's task runs it (without Airflow around it), batches of
{results['data_cleanup']['1000000']['batch_size']:,} rows, each its own transaction.

| | figure |
|---|---:|
| deleted | {results['data_cleanup']['1000000']['deleted']:,} |
| remaining | {results['data_cleanup']['1000000']['remaining']:,} |
| time (s) | {results['data_cleanup']['1000000']['seconds']:.2f} |
| batches | {results['data_cleanup']['1000000']['batches']} |
| longest single batch, the longest any lock is held (ms) | {results['data_cleanup']['1000000']['longest_batch_ms']:.0f} |

Since migration 0017 a batch checks that no distribution names its deleted transactions in one
anti-join per statement, where the foreign key it replaced checked each deleted row: measured
alone on the million-account cluster (PostgreSQL 16), 2.7–3.0 s against 3.6–4.0 s for the same
100,000 deletions, the longest batch 181–184 ms against 211–226 ms.

## withdrawal_processing — 1,000 approved requests through the Stripe stand-in

The Stripe stand-in runs as its own process on loopback; every payout is a real HTTP call with
its idempotency key, and every request's state is committed before and after its call. Beside it,
the original's loop (read the account, create the payout without a key, then write the account,
the transaction and the request; not crash-safe) over the same requests on a copy of the database.

| | platform payouts | Connect (transfer + payout) |
|---|---:|---:|
| requests completed | {w['completed']:,} of {w['requests']:,} | {wc['completed']:,} of {wc['requests']:,} |
| job time (s) | {w['job_seconds']:.2f} | {wc['job_seconds']:.2f} |
| end-to-end wall (s) | {w['wall_seconds']:.2f} | {wc['wall_seconds']:.2f} |
| requests / s | {w['requests_per_s']:,.0f} | {wc['requests_per_s']:,.0f} |
| the original's loop (s; requests / s) | {w['baseline']['seconds']:.2f}; {w['baseline']['requests_per_s']:,.0f} | (no such path) |
| peak RSS (MiB) | {w['peak_rss_mb']:.0f} | {wc['peak_rss_mb']:.0f} |

Per task (s), platform: {', '.join(f"{k} {v:.2f}" for k, v in sorted(w['tasks'].items()))}.
Connect: {', '.join(f"{k} {v:.2f}" for k, v in sorted(wc['tasks'].items()))}.
Stripe calls, Connect: {', '.join(f"{k} {v:,}" for k, v in wc['stripe_calls'].items())}.

A Connect withdrawal is two create calls (the transfer, then the payout with `Stripe-Account`),
each committed before and after, and its payout is read back on its connected account one by one
(a platform's payouts come back in one listing, 100 a page): about twice the calls of a platform
payout. Where webhooks are set up, settle takes a payout's final status from the inbox instead
of reading it.

### Under Stripe's rate limit: {wp['requests']:,} approved requests, {wp['rate_limit']}/s

The Stripe stand-in refuses every request over {wp['rate_limit']} a second with a 429 `rate_limit`
(Stripe's test mode allows 25, live mode 100); the job paces its calls at 90 % of it
(`STRIPE_CALLS_PER_SECOND` = {wp['calls_per_second']}), one call in flight per pay task, every request
committed before and after its call as above. Target: all paid within 1.5 × {wp['requests']:,} ÷ {wp['rate_limit']}
= {wp['target_seconds']:.0f} s.

| | figure | target |
|---|---:|---|
| requests completed | {wp['completed']:,} of {wp['requests']:,} | all |
| payouts created at Stripe; distinct payout ids stored | {wp['stripe_payouts']:,}; {wp['distinct_payout_ids']:,} | one per request |
| job time (s) | {wp['job_seconds']:.1f} | ≤ {wp['target_seconds']:.0f} |
| requests / s | {wp['requests_per_s']:.1f} | |
| refused for the rate (429) | {wp['rate_limited_429']:,} | |
| most payouts in one second; most requests in flight | {wp['max_payouts_in_a_second']}; {wp['max_requests_in_flight']} | ≤ {wp['rate_limit']} |
| peak RSS (MiB) | {wp['peak_rss_mb']:.0f} | |

Per task (s): {', '.join(f"{k} {v:.2f}" for k, v in sorted(wp['tasks'].items()))}.
On the Celery stack the `stripe_api` pool (2 slots) runs at most two pay tasks at once; each is
paced at the limit's share (`make soak-load`, RELIABILITY.md: two overlapping runs, bursts of
injected 429s).

The job is slower than the original's loop by design, not by accident: each payout commits its
attempt before the call and its payout id after it, under a per-request advisory lock, so a crash
at any point is finished by the next run without a second payout; and the ML engine's
notifications are delivered from the outbox by a task of their own (`deliver_notifications`),
which the original fired and forgot inside its loop.

## The fund view — 100k accounts × 365 stored days

What the page reads and what keeping it costs the jobs. The monthly benchmark's 100k-account book
is grown to a year of raw `daily_performance`: {fv['raw_daily_rows']:,} rows over
{fv['stored_days']} dates ({fv['raw_table_gib']:.1f} GiB with its indexes; each date before
January 2026 repeats a January day's rows, bulk-loaded in {fv['load_seconds']} s, untimed). The
summaries of a business date are recomputed from that date's rows inside `store_day`'s transaction
(`refresh_book_day`): measured once per stored day of January while 31 days were stored, and on
11 dates a month apart once the year was. Each section's data is then read 30 times over the
year: {fv['book_daily_rows']:,} `book_daily` rows (a summary holds one row per product and date,
whatever the number of accounts); the account section reads one account's 365 raw rows by its key.

| | figure | target |
|---|---:|---|
| summary of one business date at 100k accounts, 31 days stored (median; slowest) | {fv['summary_refresh_per_day_s']:.3f} s; {fv['summary_refresh_max_s']:.3f} s | |
| the same, 365 days stored (median; slowest) | {fv['summary_refresh_per_day_365_s']:.3f} s; {fv['summary_refresh_max_365_s']:.3f} s | |
| share of `daily_performance`'s job time at 100k ({fv['daily_job_seconds']:.2f} s) | {fv['summary_share_of_daily_job_pct']:.1f} % | < 10 % |

| section (a year, {fv['raw_daily_rows'] / 1e6:.1f}M raw rows beside) | p50 (ms) | p95 (ms) |
|---|---:|---:|
{fund_rows}

Target: every section under 300 ms. No section reads the raw table but the account's, by its
primary key; the summary of a date reads that date's rows by the date index, which a longer table
does not make slower (the two summary lines above).

## DAG parsing

Parsing every DAG file in `dags/` (DagBag fill, Airflow already imported): {results['dag_parse_seconds']:.3f} s.
"""
    (ROOT / "BENCHMARKS.md").write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
