"""
### data_cleanup — delete old failed transactions, archive old closed accounts

**What it does**, every Sunday (`0 3 * * 0`, `DATA_CLEANUP_CRON`), counting its windows from the
run's *logical date* B (never the wall clock, so a backfilled run does what it would have done
on its day):

- deletes `failed` transactions created more than `TRANSACTION_RETENTION_DAYS` (90) days before B
  that nothing references (a distribution or a withdrawal request);
- archives `closed` accounts closed more than `CLOSED_ACCOUNT_ARCHIVE_DAYS` (365) days before B,
  by setting status `archived` (the rows are kept), except an account with a withdrawal that has
  not ended or a month it was active in that is not distributed yet (those are listed).

It works in batches of `CLEANUP_BATCH_SIZE` (5000) rows, each its own short transaction, so no
lock is held for long. **Dry run:** trigger with the param `dry_run` = true to see what it would
do (the summary's `would_delete` / `would_archive`) without changing anything. A rerun is a no-op.

Tasks: delete failed transactions → archive closed accounts → summarise.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from investment_jobs import config
from investment_jobs.dag_support import dag_settings

DAG_ID = "data_cleanup"


@dag(**dag_settings(DAG_ID), tags=["investment", "maintenance", "weekly"], doc_md=__doc__,
     params={"dry_run": Param(False, type="boolean", description="report what would change; change nothing")})
def data_cleanup() -> None:
    @task
    def delete_failed_transactions(**context) -> dict:
        from investment_jobs.dag_support import job_started, run_date_from_context
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs import cleanup

        job_started(context)

        day = run_date_from_context(context)
        with connect() as conn:
            return {"business_date": day.isoformat(), **cleanup.delete_failed_transactions(
                conn, day, config.transaction_retention_days(), config.cleanup_batch_size(),
                config.cron_timezone(), bool(context["params"]["dry_run"]))}

    @task
    def archive_closed_accounts(deleted: dict, **context) -> dict:
        from datetime import date

        from investment_jobs.db.connect import connect
        from investment_jobs.jobs import cleanup

        with connect() as conn:
            return cleanup.archive_closed_accounts(
                conn, date.fromisoformat(deleted["business_date"]), config.closed_account_archive_days(),
                config.cleanup_batch_size(), config.cron_timezone(), bool(context["params"]["dry_run"]))

    @task
    def summarise(deleted: dict, archived: dict, **context) -> dict:
        from investment_jobs.dag_support import job_finished, log_summary

        summary = {"job_name": "data_cleanup", "business_date": deleted["business_date"],
                   "dry_run": bool(context["params"]["dry_run"]),
                   "transactions": {k: v for k, v in deleted.items() if k != "business_date"},
                   "accounts": archived,
                   "processed": deleted.get("deleted", 0) + archived.get("archived", 0), "error_count": 0}
        log_summary(summary)
        job_finished(context, summary, success=True)
        return summary

    deleted = delete_failed_transactions()
    summarise(deleted, archive_closed_accounts(deleted))


data_cleanup()
