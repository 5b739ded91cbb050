"""
### ml_performance_sync — the ML engine's agent snapshots, and a check of its account figures

**What it does**, every hour (`15 * * * *`, `ML_PERFORMANCE_SYNC_CRON`):

1. Pulls the engine's agent/product performance for the run's date D (the calendar date of the
   logical date in `CRON_TIMEZONE`; the day may still be open) and upserts one row per
   (agent_id, date) into `investment.agent_performance`: the hourly reruns of a date refresh it,
   never duplicate it. Known metrics are typed columns; any others are kept in `metrics` (jsonb).
2. Reconciles the engine's per-account figures for the last `RECONCILE_DAYS` (default 3) ended
   dates before D with the stored `daily_performance` rows, field by field, through the bulk
   listing. `investment.performance_discrepancies` then holds each date's current differences
   (account, date, field, stored value, engine value; field `(row)` when one side has no row).
   It never touches the money tables: rerunning `daily_performance` for a date is how a real
   difference is corrected.

**When it warns or fails.** Differences make the run log a warning and count in the summary;
the run still succeeds. Malformed items are rejected with a reason into
`investment.ml_sync_rejects`; more than `SYNC_REJECT_TOLERANCE` (default 0) fails the run after
the good items were stored. Engine 429/5xx are retried with backoff, then the task fails.

Tasks: sync agent snapshots → reconcile accounts → summarise.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from investment_jobs import config
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "ml_performance_sync"


@dag(**dag_settings(DAG_ID), tags=["investment", "ml-engine", "hourly"], doc_md=__doc__)
def ml_performance_sync() -> None:
    @task(multiple_outputs=False)
    def sync_agent_snapshots(**context) -> dict:
        import pendulum

        from investment_jobs.jobs.sync import sync_agents
        from investment_jobs.ml_engine.client import MLEngineClient
        from investment_jobs.operations.run_context import run_date, with_connection
        from investment_jobs.operations.run_log import job_started

        job_started(context)
        started_at = pendulum.now("UTC").isoformat()  # clock-ok: the summary's duration only
        day = run_date(context)
        with MLEngineClient() as client:
            return {"business_date": day.isoformat(), "started_at": started_at,
                    **with_connection(sync_agents, client, day, context["run_id"])}

    @task(multiple_outputs=False)
    def reconcile_accounts(**context) -> dict:
        from investment_jobs.jobs.sync import reconcile_recent_dates
        from investment_jobs.ml_engine.client import MLEngineClient
        from investment_jobs.operations.run_context import run_date, with_connection

        with MLEngineClient() as client:
            return with_connection(reconcile_recent_dates, client, run_date(context), context["run_id"],
                                   config.reconcile_days(), config.ml_engine_page_size())

    @task(multiple_outputs=False)
    def summarise(synced: dict, reconciled: dict, **context) -> dict:
        from investment_jobs.jobs import sync
        from investment_jobs.operations.run_context import with_connection
        from investment_jobs.operations.run_log import finish_run

        summary = with_connection(sync.summarise, context["run_id"], synced, reconciled,
                                  config.sync_reject_tolerance())
        sync.warn_about_differences(summary)
        return finish_run(summary, synced["started_at"], context, sync.check_tolerance)

    synced = sync_agent_snapshots()
    reconciled = reconcile_accounts()
    synced >> reconciled
    summarise(synced, reconciled)


ml_performance_sync()
