"""
### withdrawal_processing — pays approved withdrawal requests through Stripe, each exactly once

**What it does.** Every 30 minutes (`WITHDRAWAL_PROCESSING_CRON`) it takes the requests in
status `approved` with method `stripe_payout`, oldest first, and pays each with a Stripe payout
(connection `stripe_default`). A request moves `approved → processing → completed | failed`;
`rejected` is used only before any money moved. It works on whatever is approved when it runs;
the run's logical date plays no part.

**Steps (tasks).**
1. *claim*: checks each request against the account's **available** balance (current balance
   minus the amounts of requests already in `processing`) and moves it to `processing`, which
   reserves the amount. Rejected here, with the reason in `rejection_reason`: account not
   active, no `bank_account_id` in `destination_details`, an amount the currency cannot pay
   exactly in Stripe's units (e.g. 3 decimals in usd, kwd not in multiples of 0.010, huf/twd not
   whole), insufficient balance.
2. *pay*: creates the payout with idempotency key `withdrawal-<request id>` and stores its id at
   once. Pool `stripe_api`.
3. *settle*: reads the payouts back. `paid` → `completed`: one `withdrawal` transaction, the
   balance and `total_withdrawn` moved once. `failed`/`canceled` → `failed` with Stripe's
   `failure_code`/`failure_message`. `pending`/`in_transit` → stays `processing`, read again by
   the next run. A payout that fails after it was paid (the bank returned it) is reversed by a
   `withdrawal_reversal` transaction and the request ends `failed`.
4. *deliver_notifications*: tells the ML engine of each completed withdrawal, from an outbox
   written with the completion; retried by later runs when the engine is down; it never changes
   a withdrawal.
5. *review_withdrawals* (when `WITHDRAWAL_REVIEW_THRESHOLD` is set, e.g. `usd=10000,eur=9000`):
   a claimed request at or above the threshold, or to a destination its account was never paid
   to, is held (reserved, never paid) and listed on one *Required Action* page with account,
   amount, balance and reservations, destination and payout history. Tick *Approve* or *Decline*
   per request (a decline needs a reason). Approved ones are paid at once by *pay_reviewed*, with
   the same idempotency key as any payout; declined ones end `rejected` with "declined by <you>:
   <reason>" and never reach Stripe. Unticked ones, or no answer within
   `WITHDRAWAL_REVIEW_TIMEOUT` (20 min), wait for the next run.
6. *resolve_operator_case* (one Required Action per request that needs an operator): the facts
   and the actions safe for its case, each checked against Stripe before it is carried out:
   *Retry with the same idempotency key*; *Mark failed* (only if Stripe has no payout for it:
   the reservation is released); *Mark completed* with the payout id the dashboard shows (only if
   that payout is paid and is this request's: booked once through settle, with the ledger row,
   the balance and the engine's notification). *Decide later* or no answer within
   `OPERATOR_CASE_TIMEOUT` leaves it for the next run.
7. *summarise*: one JSON line with the counts per outcome, the amounts per currency and the
   decisions applied (`investment.operator_decisions` keeps every one, with who and why).

**Reruns and crashes are safe.** Every step is committed before the next call to Stripe. A
request left in `processing` (a crash, a timeout, a 5xx) is retried by the next run (or the task's
retry) with the same key, so Stripe returns the first payout instead of making a second. After
Stripe's 24 h key window the job first looks the payout up by its metadata.

**No backfills.** A payout job has no dates: each run pays what is approved when it runs, so a
backfill of it is a mistake, and Airflow refuses one (the DAG allows scheduled and manual runs
only). To pay now, *Trigger* a single run.

**When it fails.**
- *pay failed, N awaiting retry*: Stripe answered ambiguously (timeout, dropped connection, 409,
  429, 5xx). The requests stay `processing` with `last_error`; nothing to do unless it persists.
- *request(s) need an operator* (`needs_operator` says why): an idempotency key conflict (a
  payout may exist with other parameters), a paid payout whose account balance no longer covers
  it, a payout Stripe does not know, an account closed after an attempt, or a payout that does
  not match its request. Answer the run's *resolve_operator_case* Required Action for each
  (step 6); the run fails while any stays open, and the next run asks again.
- Definite refusals (invalid destination, `balance_insufficient` on the platform's Stripe
  balance) end the request `failed` with the reason; the run still succeeds.
- *Stripe refused the API key* (401/403: a wrong, rotated or restricted key): the run stops at the
  first refusal and changes no request; fix the `stripe_default` connection (Admin → Connections →
  Test) and the next run pays each request once with the same keys.
- An account closed or suspended after the claim is not paid: the request is rejected with the
  reason (or, after an earlier attempt, waits for an operator: a payout may exist).
- A payout id Stripe does not know holds that one request for an operator (step 6); the others
  settle.
- `bank_transfer` requests are never paid here: they stay `approved` and the summary lists them
  as awaiting a manual transfer.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, task

from investment_jobs.operations.approvals import OperatorCaseOperator, WithdrawalReviewOperator
from investment_jobs.operations.dag_settings import dag_settings

DAG_ID = "withdrawal_processing"
STRIPE_POOL = "stripe_api"
STEPS = ("claim", "pay", "settle", "deliver_notifications", "review_withdrawals", "pay_reviewed")


@dag(
    **dag_settings(DAG_ID),
    tags=["investment", "money", "stripe", "half-hourly"],
    doc_md=__doc__,
)
def withdrawal_processing() -> None:
    @task(multiple_outputs=False)
    def claim(**context) -> dict:
        """Approved → processing (amount reserved) or rejected, in one short transaction."""
        import pendulum

        from investment_jobs import config
        from investment_jobs.jobs.withdrawals.claim import claim_requests
        from investment_jobs.operations.run_context import with_connection
        from investment_jobs.operations.run_log import job_started

        job_started(context)
        started_at = pendulum.now("UTC").isoformat()  # clock-ok: the summary's duration only
        claimed = with_connection(claim_requests, context["run_id"], config.withdrawal_batch_size(),
                                  config.withdrawal_review_threshold())
        return {"started_at": started_at, **claimed}

    def pay_step(only: list[str] | None = None) -> dict:
        from datetime import timedelta

        from airflow.sdk.exceptions import AirflowFailException

        from investment_jobs import config
        from investment_jobs.jobs.withdrawals.pay import pay_requests, raise_if_ambiguous
        from investment_jobs.jobs.withdrawals.state import StripeRefusedThePlatform
        from investment_jobs.operations.run_context import with_connection
        from investment_jobs.stripe.hook import StripeHook

        try:
            counts = with_connection(pay_requests, StripeHook().get_conn(),
                                     timedelta(hours=config.idempotency_key_window_hours()),
                                     config.stripe_http_policy().rate_limit_attempts, only)
        except StripeRefusedThePlatform as exc:  # the same key gets the same answer: no retry
            raise AirflowFailException(str(exc)) from None
        raise_if_ambiguous(counts)
        return counts

    @task(pool=STRIPE_POOL, multiple_outputs=False)
    def pay() -> dict:
        """One payout per processing request without one (held ones wait for their review);
        ambiguous answers make the task retry."""
        return pay_step()

    @task(pool=STRIPE_POOL, multiple_outputs=False)
    def pay_reviewed(review: dict) -> dict:
        """The requests the reviewer approved, paid like any other (same idempotency keys)."""
        if not review.get("approved"):
            return {"payouts_created": 0, "payouts_found": 0, "failed": 0, "ambiguous": 0, "conflicts": 0,
                    "skipped_locked": 0, "rejected": 0, "errors": []}
        return pay_step(review["approved"])

    @task(pool=STRIPE_POOL, trigger_rule="all_done", multiple_outputs=False)
    def settle() -> dict:
        """Read back payouts in flight (and recent completions); complete, fail or reverse."""
        from datetime import timedelta

        from airflow.sdk.exceptions import AirflowFailException

        from investment_jobs import config
        from investment_jobs.jobs.withdrawals.settle import settle_payouts
        from investment_jobs.jobs.withdrawals.state import StripeRefusedThePlatform
        from investment_jobs.operations.run_context import with_connection
        from investment_jobs.stripe.hook import StripeHook

        try:
            return with_connection(settle_payouts, StripeHook().get_conn(), timedelta(days=config.payout_watch_days()),
                                   config.stripe_http_policy().rate_limit_attempts)
        except StripeRefusedThePlatform as exc:
            raise AirflowFailException(str(exc)) from None

    @task(trigger_rule="all_done", multiple_outputs=False)
    def deliver_notifications() -> dict:
        """The ML engine's notifications from the outbox; a failure here changes no withdrawal."""
        from investment_jobs import config
        from investment_jobs.jobs.withdrawals import notify
        from investment_jobs.ml_engine.client import MLEngineClient
        from investment_jobs.operations.run_context import with_connection

        with MLEngineClient() as engine:
            return with_connection(notify.deliver_notifications, engine, config.notification_batch_size())

    @task(trigger_rule="all_done")
    def open_operator_cases() -> list[str]:
        """The requests that need an operator (ids only): one Required Action each."""
        from investment_jobs.jobs.withdrawals.operator_cases import open_cases
        from investment_jobs.operations.run_context import with_connection

        return [case.request_id for case in with_connection(open_cases)]

    @task(trigger_rule="all_done", multiple_outputs=False)
    def summarise(**context) -> dict:
        """One JSON line for the run; fails it when a step failed or a request needs an operator."""
        from investment_jobs.jobs.withdrawals import summary
        from investment_jobs.operations.run_context import with_connection
        from investment_jobs.operations.run_log import finish_run

        results = {step: context["ti"].xcom_pull(task_ids=step) for step in STEPS}
        cases = [c for c in (context["ti"].xcom_pull(task_ids="resolve_operator_case") or []) if c]
        run_summary = with_connection(summary.summarise, context["run_id"], results, cases)
        started_at = (results["claim"] or {}).get("started_at") or context["dag_run"].start_date.isoformat()
        return finish_run(run_summary, started_at, context, summary.check_outcome)

    claimed, settled, summary = claim(), settle(), summarise()
    chain(claimed, pay(), settled, deliver_notifications(), summary)
    cases = open_operator_cases()
    resolved = OperatorCaseOperator.partial(task_id="resolve_operator_case", retries=0).expand(
        request_id=cases)
    chain(settled, cases, resolved, summary)
    review = WithdrawalReviewOperator(task_id="review_withdrawals")
    chain(claimed, review, pay_reviewed(review.output), summary)


withdrawal_processing()
