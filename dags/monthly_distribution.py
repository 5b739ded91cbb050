"""
### monthly_distribution — one calendar month's profit, net of the performance fee

**What it does.** For period **P** (a calendar month), gives every account that was active on at
least one day of P exactly one row in `investment.distributions`: its gross profit (Σ
`daily_return` of its stored days in P, so deposits and withdrawals are not profit), the
performance fee of its product, and the net profit. A profitable month is paid: status
`distributed`, one `profit_distribution` transaction (amount = net; it records the payout and
does not move the balance), and `accounts.total_profit_distributed` grows by the net, all in one
database transaction. A month with no profit still gets its row: status `no_profit`, fee 0, net 0.

**Which month.** P is the month of the run's *logical date* in `CRON_TIMEZONE`. The scheduled run
for P starts after P has ended (01:00 on the 1st of the next month by default,
`MONTHLY_DISTRIBUTION_CRON`). A run for a month that has not ended fails at once, writing nothing.

**Fees.** Per product (`products.fee_model`): `simple`, the fee percentage of a positive gross;
or `high_water_mark`, a fee only on cumulative profit above the best level a fee was already
charged up to (losses are earned back first; the mark is kept in `accounts.high_water_mark`). Fees
are rounded to the currency's minor unit (0 decimals for jpy, 3 for kwd, …), half-even; fee + net
== gross exactly.

**Reruns are safe.** An account's month is distributed once: the unique (account_id, period) key
and an advisory lock hold that even for two runs at the same time. A rerun distributes only
accounts that were held back before, at the rate the period's first run used (a product's fee
changed in between applies from the next period; the summary lists it under
`rates_kept_from_first_run`). An account opened and closed on the same day was active on no day
and gets no row; an account whose fee cannot be computed is held back with the reason, and never
stops the others.

**When it fails.**
- *account(s) held back*: a day on which the account was active has no `daily_performance` row.
  Those accounts were not distributed (the others were). Backfill `daily_performance` for the
  listed dates, then rerun the period.
- *no longer match their stored days*: a day of an already distributed month was rerun later and
  the stored days now add up differently (the differences are listed). The distribution was left
  as it is: decide on a correcting entry.
- *period … has not ended yet*: pick a logical date in an earlier month.

Tasks: assess accounts → compute fees → distribute → summarise (→ drop staging).
"""

from __future__ import annotations

from airflow.sdk import dag, setup, task, teardown

from investment_jobs import config
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "monthly_distribution"


@dag(
    **dag_settings(DAG_ID),
    tags=["investment", "money", "monthly"],
    doc_md=__doc__,
)
def monthly_distribution() -> None:
    @setup
    def assess_accounts(**context) -> dict:
        """Resolve P from the run; decide each active account's outcome (setup: creates staging)."""
        import pendulum

        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import ended_period, with_connection
        from investment_jobs.operations.run_log import job_started

        job_started(context)
        now = pendulum.now("UTC")  # clock-ok: only to refuse a month that has not ended
        run = monthly.reference_for(ended_period(context, now), context["run_id"])
        outcomes = with_connection(monthly.assess_accounts, run, config.cron_timezone())
        return {"run": run.to_xcom(), "outcomes": outcomes, "started_at": now.isoformat()}

    @task
    def compute_fees(assessment: dict) -> dict:
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step

        return run_step(monthly.compute_fees, assessment["run"])

    @task
    def distribute(assessment: dict) -> dict:
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step

        return run_step(monthly.distribute, assessment["run"])

    @task
    def summarise(assessment: dict, written: dict, **context) -> dict:
        """One JSON summary line (also this task's XCom); fails when accounts need an operator."""
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step
        from investment_jobs.operations.run_log import finish_run

        summary = run_step(monthly.summarise, assessment["run"], {**assessment["outcomes"], **written})
        return finish_run(summary, assessment["started_at"], context, monthly.check_complete)

    @teardown
    def drop_staging(assessment: dict) -> None:
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step

        run_step(monthly.drop_staging, assessment["run"])

    assessment = assess_accounts()
    written = distribute(assessment)
    compute_fees(assessment) >> written
    summarise(assessment, written) >> drop_staging(assessment)


monthly_distribution()
