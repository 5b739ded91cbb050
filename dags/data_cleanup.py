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
- with `DAILY_PERFORMANCE_RETENTION_MONTHS` = N (default 0: keep every month), archives each whole
  month of `daily_performance` before the N months preceding B's month whose distribution run
  completed: its partition is detached into schema `investment_archive` (no row is deleted; an
  instant however many rows), listed in `investment.archived_daily_months` and the summary's
  `daily_months`. A month not distributed yet is kept and listed. An archived month is never
  written again: daily and monthly runs of it fail at once and say so. The fund view's book
  summaries keep its figures; the account section no longer shows its days.

It works in batches of `CLEANUP_BATCH_SIZE` (5000) rows, each its own short transaction, so no
lock is held for long. **Dry run:** trigger with the param `dry_run` = true to see what it would
do (the summary's `would_delete` / `would_archive`) without changing anything. A rerun is a no-op.

Tasks: delete failed transactions → archive closed accounts → archive old daily months → summarise.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from investment_jobs import config
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "data_cleanup"


@dag(**dag_settings(DAG_ID), tags=["investment", "maintenance", "weekly"], doc_md=__doc__,
     params={"dry_run": Param(False, type="boolean", description="report what would change; change nothing")})
def data_cleanup() -> None:
    @task(multiple_outputs=False)
    def delete_failed_transactions(**context) -> dict:
        import pendulum

        from investment_jobs.jobs import cleanup
        from investment_jobs.operations.run_context import run_date, with_connection
        from investment_jobs.operations.run_log import job_started

        job_started(context)
        started_at = pendulum.now("UTC").isoformat()  # clock-ok: the summary's duration only
        return {"started_at": started_at, **with_connection(
            cleanup.delete_failed_transactions, run_date(context), config.transaction_retention_days(),
            config.cleanup_batch_size(), config.cron_timezone(), bool(context["params"]["dry_run"]))}

    @task(multiple_outputs=False)
    def archive_closed_accounts(**context) -> dict:
        from investment_jobs.jobs import cleanup
        from investment_jobs.operations.run_context import run_date, with_connection

        return with_connection(cleanup.archive_closed_accounts, run_date(context),
                               config.closed_account_archive_days(), config.cleanup_batch_size(),
                               config.cron_timezone(), bool(context["params"]["dry_run"]))

    @task(multiple_outputs=False)
    def archive_old_daily_months(**context) -> dict:
        """Whole months of daily_performance before the retention window, detached into investment_archive."""
        from investment_jobs.jobs.daily_months import archive_old_months
        from investment_jobs.operations.run_context import run_date, with_connection

        return with_connection(archive_old_months, run_date(context), config.daily_performance_retention_months(),
                               context["run_id"], bool(context["params"]["dry_run"]))

    @task(multiple_outputs=False)
    def summarise(deleted: dict, archived: dict, months: dict, **context) -> dict:
        from investment_jobs.jobs import cleanup
        from investment_jobs.operations.run_context import run_date
        from investment_jobs.operations.run_log import finish_run

        summary = cleanup.summarise(run_date(context), bool(context["params"]["dry_run"]), deleted, archived, months)
        return finish_run(summary, deleted["started_at"], context)

    deleted = delete_failed_transactions()
    archived = archive_closed_accounts()
    months = archive_old_daily_months()
    deleted >> archived >> months
    summarise(deleted, archived, months)


data_cleanup()
