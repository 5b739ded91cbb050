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
from investment_jobs.dag_support import dag_settings

DAG_ID = "ml_performance_sync"


@dag(**dag_settings(DAG_ID), tags=["investment", "ml-engine", "hourly"], doc_md=__doc__)
def ml_performance_sync() -> None:
    @task
    def sync_agent_snapshots(**context) -> dict:
        from investment_jobs.dag_support import job_started, run_date_from_context
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.sync import sync_agents
        from investment_jobs.ml_engine.client import MLEngineClient

        job_started(context)
        day = run_date_from_context(context)
        with connect() as conn, MLEngineClient() as client:
            return {"business_date": day.isoformat(), **sync_agents(conn, client, day, context["run_id"])}

    @task
    def reconcile_accounts(synced: dict, **context) -> dict:
        from datetime import date

        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.sync import reconcile, reconcile_dates
        from investment_jobs.ml_engine.client import MLEngineClient

        dates = reconcile_dates(date.fromisoformat(synced["business_date"]), config.reconcile_days())
        with connect() as conn, MLEngineClient() as client:
            per_date = {d.isoformat(): reconcile(conn, client, d, context["run_id"], config.ml_engine_page_size())
                        for d in dates}
        return {"dates": list(per_date), "per_date": per_date}

    @task
    def summarise(synced: dict, reconciled: dict, **context) -> dict:
        from datetime import date

        from investment_jobs.dag_support import job_finished, log, log_summary
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.sync import summarise as summarise_run

        counts = {**{k: v for k, v in synced.items() if k != "business_date"},
                  "accounts_received": sum(v["received"] for v in reconciled["per_date"].values()),
                  "accounts_rejected": sum(v["rejected"] for v in reconciled["per_date"].values())}
        with connect() as conn:
            summary = summarise_run(conn, date.fromisoformat(synced["business_date"]),
                                    [date.fromisoformat(d) for d in reconciled["dates"]], counts, context["run_id"])
        log_summary(summary)
        if summary["discrepancy_count"]:
            log.warning("%d difference(s) between the ML engine and the stored daily_performance rows; "
                        "see investment.performance_discrepancies", summary["discrepancy_count"])
        rejected = summary["agents_rejected"] + summary["accounts_rejected"]
        job_finished(context, summary, success=rejected <= config.sync_reject_tolerance())
        if rejected > config.sync_reject_tolerance():
            from airflow.sdk.exceptions import AirflowFailException

            tolerance = config.sync_reject_tolerance()
            listed = "; ".join(f"{r['source']} {r['key'] or '(no id)'}: {r['reason']}"
                               for r in summary["rejected"][:20])
            raise AirflowFailException(f"{rejected} engine item(s) rejected (tolerance {tolerance}); "
                                       f"the good ones were stored. Rejected: {listed}")
        return summary

    synced = sync_agent_snapshots()
    summarise(synced, reconcile_accounts(synced))


ml_performance_sync()
