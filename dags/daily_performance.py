"""
### daily_performance — every active account's performance for ONE business date

**What it does.** For business date **D**, pulls each account's day from the ML engine
(`GET /api/v1/performance/daily`, paged), validates every item, and stores one row per
(account, D) in `investment.daily_performance`; then brings `accounts.current_balance` and
`total_return_percentage` up to date.

**Which date.** D is the run's *partition key* (`YYYY-MM-DD`, shown on the run): scheduled runs
and backfills carry it. A run without one (a manual trigger, `make job`, `airflow dags test`)
takes the calendar date of its *logical date* in `CRON_TIMEZONE` (default UTC). The scheduled run
for D starts after D has ended (00:30 the next day by default, `DAILY_PERFORMANCE_CRON`) and must
have succeeded by `DAILY_DEADLINE` (06:00) on D+1, or a `deadline_missed` alert goes out. A run
for a day that has not ended fails at once and writes nothing.

**What follows.** A successful run stores partition D of the asset
`investment.daily_performance`. When every day of a month is stored, `monthly_distribution` runs
for that month by itself. Missed days? Backfill them (*Trigger → Backfill*, From and To both
included, or `airflow backfill create --dag-id daily_performance --from-date D1 --to-date D2`):
the month follows. A rerun of a day in a month already distributed stores the new day and reports
`distribution_drift` (summary and alert) for the accounts whose distribution no longer adds up;
nothing is paid again.

**Reruns and backfills are safe.** A rerun replaces D's rows (one upsert per run, never a
duplicate). Days can run in any order: when an earlier day changes, the cumulative fields of
later stored days are recomputed. A backfill of an old day never overwrites a newer balance.

**Cumulative fields.** `cumulative_return` = sum of `daily_return` up to and including D;
`cumulative_return_percentage` = time-weighted return, (∏(1 + r/100) − 1) × 100, chained with
10 decimals (half-even) per day.

**When it fails.**
- *business date … has not ended yet*: pick an earlier logical date.
- *N engine item(s) rejected*: the good items were stored; each reject and its reason is in
  `investment.daily_performance_rejects` (and the `summarise` log). Fix the engine's data and
  rerun D. `DAILY_REJECT_TOLERANCE` (default 0) sets how many rejects a run accepts.
- *the daily rows of YYYY-MM were archived by data_cleanup*: D's month is older than
  `DAILY_PERFORMANCE_RETENTION_MONTHS` and its partition is in schema `investment_archive`; such a
  date is not written again (nothing was written).
- *ML engine HTTP 429/5xx or unreachable*: retried with backoff, then the task fails; nothing
  was written for D. Rerun D when the engine is back.
- *bulk listing … next_cursor came back* or *still not finished after N pages*: the engine's
  paging never ends (a repeat, a cycle, or more pages than the active accounts need;
  `ML_ENGINE_MAX_PAGES` sets the limit). Nothing was written for D; report it to the engine's team.
- A task that runs past `TASK_EXECUTION_TIMEOUT_MINUTES` (default 60) is stopped and retried.

Accounts active on D that the engine sent nothing for are listed in the summary (`missing`).
Tasks: snapshot active accounts → pull engine pages → store the day (match, chain, upsert D's
rows and bring the accounts up to them, in one transaction) → summarise (→ drop staging). The
pull is one mapped task per shard (`SHARDS`, default 1), each named by its account range
(*shard 2 of 4: ids 40000000… to 80000000*): a failed shard is retried, or cleared, on its own,
and nothing after the pull starts until every shard is in. The summary's
`items_outside_their_shard` above 0 means the engine ignores the ranges (each shard then fetched
the whole listing): correct, only slower; tell the engine's team.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, setup, task, teardown

from investment_jobs import config
from investment_jobs.assets import DAILY_PERFORMANCE
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "daily_performance"
ML_ENGINE_POOL = "ml_engine"  # airflow_settings.yaml: calls at once into the engine, across workers


@dag(
    **dag_settings(DAG_ID),
    tags=["investment", "money", "ml-engine", "daily"],
    doc_md=__doc__,
)
def daily_performance() -> None:
    # SHARDS mapped pulls, one account range each: a deployment setting read as the DAG is parsed
    # (like its schedule), so a run and its retries keep the count its DAG version shows.
    shards = config.daily_shards()

    @setup
    @task(multiple_outputs=False)
    def fetch_active_accounts(shards: int, **context) -> dict:
        """Resolve D from the run and snapshot the accounts active on D into staging.

        A setup task: it creates the run's staging tables, which the teardown drops; when it
        fails (e.g. D has not ended), there is nothing to drop and the teardown is skipped.
        """
        import pendulum
        from airflow.sdk.exceptions import AirflowFailException

        from investment_jobs.jobs import daily
        from investment_jobs.jobs.daily_months import MonthArchived
        from investment_jobs.operations.run_context import ended_business_date, with_connection
        from investment_jobs.operations.run_log import job_started

        job_started(context)
        now = pendulum.now("UTC")  # clock-ok: only to refuse a day that has not ended
        run = daily.reference_for(ended_business_date(context, now), context["run_id"])
        try:
            active = with_connection(daily.snapshot_active_accounts, run, config.cron_timezone(), shards)
        except MonthArchived as exc:  # a retry gets the same answer
            raise AirflowFailException(str(exc)) from None
        return {"run": run.to_xcom(), "active_accounts": active, "started_at": now.isoformat(), "shards": shards}

    # The shards of every date running at once share the pool's slots: the engine sees at most that
    # many listings in flight, whatever SHARDS and a backfill's max-active-runs multiply to.
    @task(map_index_template="{{ account_range | default('') }}", pool=ML_ENGINE_POOL, multiple_outputs=False)
    def pull_ml_performance(snapshot: dict, shard: int) -> dict:
        """Page the engine's listing for D (one account range per mapped task, SHARDS) into
        staging; a listing that breaks the contract fails at once."""
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from investment_jobs.jobs import daily
        from investment_jobs.ml_engine.client import MLEngineClient, PermanentEngineError
        from investment_jobs.ml_engine.shards import AccountRange
        from investment_jobs.operations.run_context import run_step

        account_range = AccountRange(shard, snapshot["shards"])
        get_current_context()["account_range"] = account_range.label  # the mapped task's name in the grid
        with MLEngineClient() as client:
            try:
                return run_step(lambda conn, run: daily.pull_performance(
                    conn, client, run, config.ml_engine_page_size(), config.ml_engine_max_pages(), account_range),
                    snapshot["run"])
            except PermanentEngineError as exc:  # a retry gets the same answer
                raise AirflowFailException(str(exc)) from None

    @task(multiple_outputs=False)
    def store_day(snapshot: dict) -> dict:
        """Match, chain and upsert D's rows and bring the accounts up to them: one transaction."""
        from investment_jobs.jobs import daily
        from investment_jobs.operations.run_context import run_step

        return run_step(daily.store_day, snapshot["run"], config.cron_timezone())

    @task(outlets=[DAILY_PERFORMANCE], multiple_outputs=False)
    def summarise(snapshot: dict, pulled: list, stored: dict, **context) -> dict:
        """One JSON summary line (also this task's XCom); fails past DAILY_REJECT_TOLERANCE. On
        success, D's partition of the daily asset is stored: the month's rollup counts it."""
        from investment_jobs.jobs import daily
        from investment_jobs.operations.alerts import announce_distribution_drift
        from investment_jobs.operations.run_context import run_step
        from investment_jobs.operations.run_log import finish_run

        counts = {"active_accounts": snapshot["active_accounts"], **daily.add_pulled(list(pulled[:])), **stored}
        summary = run_step(daily.summarise, snapshot["run"], counts, config.daily_reject_tolerance())
        finish_run(summary, snapshot["started_at"], context, daily.check_tolerance)
        announce_distribution_drift(summary, context)
        run_step(daily.record_partition, snapshot["run"])
        context["outlet_events"][DAILY_PERFORMANCE].add_partitions(summary["business_date"])
        return summary

    @teardown
    def drop_staging(snapshot: dict) -> None:
        from investment_jobs.jobs import daily
        from investment_jobs.operations.run_context import run_step

        run_step(daily.drop_staging, snapshot["run"])

    snapshot = fetch_active_accounts(shards)
    pulled = pull_ml_performance.partial(snapshot=snapshot).expand(shard=list(range(shards)))
    stored = store_day(snapshot)
    chain(pulled, stored)
    summarise(snapshot, pulled, stored) >> drop_staging(snapshot)


daily_performance()
