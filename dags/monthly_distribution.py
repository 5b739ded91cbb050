"""
### monthly_distribution — one calendar month's profit, net of the performance fee

**What it does.** For period **P** (a calendar month), gives every account that was active on at
least one day of P exactly one row in `investment.distributions`: its gross profit (Σ
`daily_return` of its stored days in P, so deposits and withdrawals are not profit), the
performance fee of its product, and the net profit. A profitable month is paid: status
`distributed`, one `profit_distribution` transaction (amount = net; it records the payout and
does not move the balance), and `accounts.total_profit_distributed` grows by the net, all in one
database transaction. A month with no profit still gets its row: status `no_profit`, fee 0, net 0.

**When it runs.** By itself, as soon as the last day of P is stored: it is scheduled on the
daily performance asset, a rollup of the month's daily partitions that waits for every day
(*Pending Dag Runs* on this page shows each waiting month and which days have arrived, e.g.
`28 / 30`). A day that arrives late through a backfill of `daily_performance` completes the month
just the same. `MONTHLY_DISTRIBUTION_CRON` (01:00 on the 1st) is no longer a start time but the
month's deadline: P must be distributed by that time on the 1st of the next month plus
`MONTHLY_DEADLINE` (24 h), or a `deadline_missed` alert goes out (`/health/jobs` shows a month
still waiting for its days).

**Which month.** P is the run's *partition key* (`YYYY-MM`). A manual run without one takes the
month of its *logical date* in `CRON_TIMEZONE`; *Trigger* with a partition key `YYYY-MM` reruns P.
A run for a month that has not ended fails at once, writing nothing.

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

**Approval (four eyes).** Before anything is credited the run waits in *Browse → Required
Actions* (and the task's *Required Action* tab) with the month's figures: per currency and product
the accounts, gross profit, fees, net credited and losses; the ten largest fees; the change against
the previous distributed month; the held-back accounts and their missing dates; anomalies (a fee
above `DISTRIBUTION_REVIEW_FEE_ALERT`, a gross change beyond `DISTRIBUTION_REVIEW_CHANGE_ALERT` %).
The waiting approval is announced on the alert webhook with a link to its page.
- *Approve* → `distribute` credits exactly the rows shown (their fingerprint) or nothing.
- *Reject* (write the reason; without one it is not taken) → nothing is written; the run fails
  saying who rejected it and why.
- No answer within `DISTRIBUTION_APPROVAL_TIMEOUT` (48 h) → nothing is written; the run fails and
  the failure alert goes out. Rerun the period to ask again.
- With `MONEY_APPROVERS` set, an answer from anyone else is refused (recorded) and the question
  stays open. Every answer, refusal and timeout is in `investment.operator_decisions`, and the run
  summary names them. `DISTRIBUTION_APPROVAL=auto` skips the wait (recorded as `auto`); `make job`
  approves as `cli:<os user>` after printing the same figures.

**When it fails.**
- *rejected by …* / *nobody approved or rejected it*: fix what the reviewer named (or ask again),
  then rerun the period (*Trigger* with partition key `YYYY-MM`).
- *account(s) held back*: a day on which the account was active has no `daily_performance` row.
  Those accounts were not distributed (the others were). Backfill `daily_performance` for the
  listed dates; the month reruns for them (or trigger it).
- *no longer match their stored days* (drift): a day of an already distributed month was rerun
  later. Nothing is paid twice. The run's *resolve_drift* Required Action lists each account's
  figures as paid and as the stored days give them now, with the difference in net profit:
  *Post correcting adjustments* (one `adjustment` per account, at the month's own rate) or
  *Acknowledge and leave as it is*; either makes the check clean. *Decide later* (or no answer
  within `DRIFT_DECISION_TIMEOUT`) leaves it: rerun the period to be asked again.
- *not the ones approved*: the computed rows changed after the approval; rerun the period.
- *period … has not ended yet*: pick a logical date in an earlier month.
- *the daily rows of YYYY-MM were archived by data_cleanup*: the month is older than
  `DAILY_PERFORMANCE_RETENTION_MONTHS`; its distribution stands and is not computed again.

Tasks: assess accounts → compute fees → approve distribution → distribute → resolve drift →
summarise (→ drop staging).
"""

from __future__ import annotations

from airflow.sdk import dag, setup, task, teardown

from investment_jobs import config
from investment_jobs.assets import MONTHLY_DISTRIBUTIONS
from investment_jobs.operations.approvals import DistributionApprovalOperator, DriftDecisionOperator
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "monthly_distribution"


@dag(
    **dag_settings(DAG_ID),
    tags=["investment", "money", "monthly"],
    doc_md=__doc__,
)
def monthly_distribution() -> None:
    @setup
    @task(multiple_outputs=False)
    def assess_accounts(**context) -> dict:
        """Resolve P from the run; decide each active account's outcome (setup: creates staging)."""
        import pendulum
        from airflow.sdk.exceptions import AirflowFailException

        from investment_jobs.jobs import monthly
        from investment_jobs.jobs.daily_months import MonthArchived
        from investment_jobs.operations.run_context import ended_period, with_connection
        from investment_jobs.operations.run_log import job_started

        job_started(context)
        now = pendulum.now("UTC")  # clock-ok: only to refuse a month that has not ended
        run = monthly.reference_for(ended_period(context, now), context["run_id"])
        try:
            outcomes = with_connection(monthly.assess_accounts, run, config.cron_timezone())
        except MonthArchived as exc:  # a retry gets the same answer
            raise AirflowFailException(str(exc)) from None
        return {"run": run.to_xcom(), "outcomes": outcomes, "started_at": now.isoformat()}

    @task(multiple_outputs=False)
    def compute_fees(assessment: dict) -> dict:
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step

        return run_step(monthly.compute_fees, assessment["run"])

    @task(multiple_outputs=False)
    def distribute(assessment: dict, approval: dict) -> dict:
        """Writes exactly the approved rows (their fingerprint), or nothing."""
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step

        return run_step(monthly.distribute, assessment["run"], approval)

    @task(outlets=[MONTHLY_DISTRIBUTIONS], multiple_outputs=False)
    def summarise(assessment: dict, written: dict, **context) -> dict:
        """One JSON summary line (also this task's XCom); fails when accounts need an operator. On
        success every account of P is distributed: P's partition of the distributions asset."""
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step
        from investment_jobs.operations.run_log import finish_run

        summary = run_step(monthly.summarise, assessment["run"], {**assessment["outcomes"], **written})
        finish_run(summary, assessment["started_at"], context, monthly.check_complete)
        run_step(monthly.record_partition, assessment["run"])
        context["outlet_events"][MONTHLY_DISTRIBUTIONS].add_partitions(summary["period"])
        return summary

    @teardown
    def drop_staging(assessment: dict) -> None:
        from investment_jobs.jobs import monthly
        from investment_jobs.operations.run_context import run_step

        run_step(monthly.drop_staging, assessment["run"])

    assessment = assess_accounts()
    approval = DistributionApprovalOperator(task_id="approve_distribution", assessment=assessment)
    written = distribute(assessment, approval.output)
    compute_fees(assessment) >> approval
    drift = DriftDecisionOperator(task_id="resolve_drift", assessment=assessment)
    summary = summarise(assessment, written)
    written >> drift >> summary
    summary >> drop_staging(assessment)


monthly_distribution()
