"""
### stripe_reconciliation — one business date's Stripe payouts and transfers against the database

**What it does.** Every night at 02:00 (`STRIPE_RECONCILIATION_CRON`), for yesterday's business
date D (in `CRON_TIMEZONE`), it reads from Stripe (connection `stripe_default`) every payout
created on D (the platform's, and on each connected account our requests pay through), every
transfer, and the platform's balance transactions with their fees, and compares them with the
withdrawal requests and their `withdrawal` transactions. It writes D's report (replacing an
earlier run's) and never changes a withdrawal: it reports, a person decides.

**What counts as a difference** (each with Stripe's value and ours, in the summary):
- `missing_in_database`: Stripe has a payout or transfer no request recorded (made outside the
  job, or a second one for a request);
- `missing_at_stripe`: a request recorded a payout or transfer on D that Stripe does not list;
- `amount` / `currency`: Stripe's amount (its minor units) is not the request's;
- `status`: Stripe says `paid` and the request is not `completed`, or `failed` and it is not
  `failed`, or a transfer is reversed and no reversal is recorded (or the other way round);
- `ledger`: a completed request's `withdrawal` transaction is not its amount;
- a balance movement (payout, transfer, transfer refund, payout failure) whose source is not ours
  or whose amount is not what our record moved.

The summary also reports Stripe's fees per currency and the platform's balance change on D
(amount, fee, net), and `/health/jobs` shows the last reconciled date and its differences.

**When it fails.** More than `STRIPE_RECONCILIATION_TOLERANCE` (0) differences fail the run, with
the differences by kind; up to that it succeeds with a warning. A `status` difference on a payout
that is still settling (e.g. paid at Stripe, `processing` here) clears once
`withdrawal_processing` has settled it: clear this run then. An `amount`, `missing_…` or `ledger`
difference is money that does not match: look at the request and the Stripe dashboard. A rerun
(Clear, or a backfill of a range of dates) replaces the date's report; it is read-only at Stripe.
A day that has not ended is refused at once.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from investment_jobs import config
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "stripe_reconciliation"


@dag(**dag_settings(DAG_ID), tags=["investment", "money", "stripe", "daily"], doc_md=__doc__)
def stripe_reconciliation() -> None:
    @task(pool="stripe_api", multiple_outputs=False)
    def reconcile(**context) -> dict:
        """D's payouts, transfers and balance transactions at Stripe against the database."""
        import pendulum

        from investment_jobs.jobs.reconciliation import reconcile as reconcile_day
        from investment_jobs.operations.run_context import ended_business_date, with_connection
        from investment_jobs.operations.run_log import job_started
        from investment_jobs.stripe.hook import StripeHook

        job_started(context)
        now = pendulum.now("UTC")  # clock-ok: only to refuse a day that has not ended
        day = ended_business_date(context, now)
        counts = with_connection(reconcile_day, StripeHook().get_conn(), day, config.cron_timezone(),
                                 context["run_id"])
        return {"started_at": now.isoformat(), **counts}

    @task(multiple_outputs=False)
    def summarise(counts: dict, **context) -> dict:
        """One JSON line; warns on differences, fails above STRIPE_RECONCILIATION_TOLERANCE."""
        import logging

        from investment_jobs.jobs.reconciliation import check_tolerance
        from investment_jobs.operations.run_log import finish_run

        tolerance = config.stripe_reconciliation_tolerance()
        if counts["differences"]:
            logging.getLogger("investment_jobs.reconciliation").warning(
                "%s difference(s) with Stripe for %s: %s", counts["differences"], counts["business_date"],
                counts["differences_by_kind"])
        summary = {"dag_id": DAG_ID, **{k: v for k, v in counts.items() if k != "started_at"}}
        return finish_run(summary, counts["started_at"], context, lambda s: check_tolerance(s, tolerance))

    summarise(reconcile())


stripe_reconciliation()
