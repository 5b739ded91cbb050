"""Four eyes on money, on a real scheduler: LocalExecutor, PostgreSQL metadata, an API server, a
scheduler and a DAG processor, each its own process. Decisions are given through the REST API, as
the UI's Required Actions gives them (issue 15).

What it proves, one month or request at a time (March's wait for its timeout runs while the
withdrawals of 4 and 5 are reviewed, so the test waits out one timeout only):

1. 2026-01: the run computes the month and waits. The waiting approval is announced with a link to
   its page. A user outside ``MONEY_APPROVERS`` approves: refused, recorded, asked again. An
   approver approves: the distributions exist and equal the figures the page showed. Then a day
   of January is rerun with another return: the month's rerun asks about the drift, the operator
   posts the correcting adjustment, and the drift check is clean again (the run succeeds).
2. 2026-02: an approver rejects without a reason (not taken: asked again), then with one:
   nothing is written, the run fails saying who and why, the audit rows exist.
3. 2026-03: nobody answers within ``DISTRIBUTION_APPROVAL_TIMEOUT``: nothing is written, the
   failure alert is delivered, the timeout is recorded.
4. Withdrawals at or above ``WITHDRAWAL_REVIEW_THRESHOLD`` wait for the review while a routine one
   is paid; the approved one is then paid, the declined one ends ``rejected`` with the reviewer's
   reason and never reaches Stripe (the stand-in's request log).
5. A request that needs an operator (a payout Stripe did not know) gets its own Required Action;
   the operator marks it completed with the payout id the dashboard shows: checked against Stripe,
   booked once (ledger, balance, outbox).
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from urllib.parse import quote

import pytest

from investment_jobs_dev.stack import Stack
from tests.support.book import fill_days
from tests.support.stack_runs import meta, stack_databases, stop_and_keep_logs, summary_of, wait_for

pytestmark = pytest.mark.integration

ACCOUNTS = 12
SEED = 43
TASK = "approve_distribution"
TIMEOUT_SECONDS = 90  # long enough for the test to answer, short enough to wait out once


def hitl_path(run_id: str, dag_id: str = "monthly_distribution", task: str = TASK, map_index: int = -1) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task}/{map_index}/hitlDetails"


def trigger(stack: Stack, period: str, why: str = "approval") -> str:
    run_id = f"manual__{why}_{period}"
    status, body = stack.api("POST", "/api/v2/dags/monthly_distribution/dagRuns",
                             {"logical_date": None, "partition_key": period, "dag_run_id": run_id})
    assert status == 200, body
    return run_id


def parked(stack: Stack, run_id: str, task: str = TASK) -> int:
    """How many times the scheduler has seen the task's process end with the task parked.

    An answer before the scheduler has seen that (within its first loop, under a second after the
    question) trips an Airflow 3.3.2 race: the stale "process ended" event then finds the resumed
    task queued and fails it. A person never answers that fast; the test waits as long as it takes."""
    log = (stack.home / "scheduler.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if "TaskInstance Finished:" in line
               and f"task_id={task}, run_id={run_id}," in line and "state=awaiting_input" in line)


def waiting(stack: Stack, run_id: str, times: int = 1, dag_id: str = "monthly_distribution",
            task: str = TASK, map_index: int = -1) -> dict:
    """The approval page of the run once its task waits (for the ``times``-th time) for an answer."""
    def asked() -> dict | None:
        if parked(stack, run_id, task) < times:
            return None
        state = meta(stack, """SELECT state FROM task_instance WHERE dag_id = %s
                               AND run_id = %s AND task_id = %s AND map_index = %s""", (dag_id, run_id, task, map_index))
        if state != [("awaiting_input",)]:
            return None
        status, body = stack.api("GET", hitl_path(run_id, dag_id, task, map_index))
        return body if status == 200 and not body["response_received"] else None  # type: ignore[index]

    return wait_for(f"{run_id} to wait for its approval", asked)


def answer(stack: Stack, run_id: str, choice: str | list[str], reason: str, user: str,
           dag_id: str = "monthly_distribution", task: str = TASK, map_index: int = -1, **params: str) -> None:
    chosen = [choice] if isinstance(choice, str) else choice
    status, body = stack.api("PATCH", hitl_path(run_id, dag_id, task, map_index),
                             {"chosen_options": chosen, "params_input": {"reason": reason, **params}},
                             token=stack.token(user))
    assert status == 200, (status, body)


def finished(stack: Stack, run_id: str, dag_id: str = "monthly_distribution") -> str:
    return wait_for(f"{run_id} to finish", lambda: [s for (s,) in meta(stack, """
        SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s""", (dag_id, run_id))
        if s in ("success", "failed")])[0]


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def decisions(dsn: str, period: str) -> list[tuple]:
    return query(dsn, """SELECT decided_by, choice, outcome, reason FROM investment.operator_decisions
                         WHERE period = %s ORDER BY id""", (period,))


def credited(dsn: str, period: str) -> dict[str, tuple]:
    rows = query(dsn, """SELECT p.currency, count(*), coalesce(sum(d.gross_profit) FILTER (WHERE d.status = 'distributed'), 0),
                                sum(d.performance_fee_amount), sum(d.net_profit)
                         FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
                         WHERE d.period = %s GROUP BY 1""", (period,))
    return {cur: (n, g, f, net) for cur, n, g, f, net in rows}


def held_withdrawals(dsn: str) -> dict[str, str]:
    """Three usd withdrawals of one account: a routine one to a destination it was paid to before, and
    two at or above the review threshold."""
    import uuid

    (account, user), = query(dsn, """SELECT a.id::text, a.user_id::text FROM investment.accounts a
                                     JOIN investment.products p ON p.id = a.product_id
                                     WHERE a.status = 'active' AND p.currency = 'usd' AND a.current_balance > 5000
                                     ORDER BY a.id LIMIT 1""")
    ids = {name: str(uuid.uuid4()) for name in ("earlier", "routine", "large", "declined")}
    rows = [("earlier", "10.00"), ("routine", "25.00"), ("large", "1500.00"), ("declined", "2000.00")]
    import psycopg

    with psycopg.connect(dsn) as conn:
        for n, (name, amount) in enumerate(rows):
            conn.execute("""INSERT INTO investment.withdrawal_requests (id, account_id, user_id, amount,
                                withdrawal_method, destination_details, status, created_at)
                            VALUES (%s, %s, %s, %s, 'stripe_payout', '{"bank_account_id": "ba_known"}', 'approved',
                                    timestamptz '2026-04-01' + %s * interval '1 minute')""",
                         (ids[name], account, user, Decimal(amount), n))
        (tx,) = conn.execute("""INSERT INTO investment.transactions (account_id, user_id, type, amount,
                                    balance_before, balance_after, withdrawal_request_id, status, processed_at)
                                VALUES (%s, %s, 'withdrawal', 0, 0, 0, %s, 'completed', now()) RETURNING id""",
                             (account, user, ids["earlier"])).fetchone()
        conn.execute("""UPDATE investment.withdrawal_requests SET status = 'completed', transaction_id = %s,
                        processed_at = now() WHERE id = %s""", (tx, ids["earlier"]))
    return ids


def case_with_a_paid_payout(dsn: str, stripe) -> tuple[str, str, str]:  # noqa: ANN001
    """A request held for an operator (``payout_unknown``) whose payout Stripe does have, paid:
    (request id, account id, payout id)."""
    import uuid

    import psycopg
    from stripe import StripeClient

    from tests.support.paths import STRIPE_TEST_KEY

    (account, user), = query(dsn, """SELECT a.id::text, a.user_id::text FROM investment.accounts a
                                     JOIN investment.products p ON p.id = a.product_id
                                     WHERE a.status = 'active' AND p.currency = 'usd' ORDER BY a.id DESC LIMIT 1""")
    rid = str(uuid.uuid4())
    client = StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stripe.url}, max_network_retries=0)
    payout = client.v1.payouts.create(params={"amount": 3300, "currency": "usd", "destination": "ba_case",
                                              "metadata": {"withdrawal_request_id": rid}})
    client.v1.payouts.retrieve(payout.id)  # the stand-in's payout is paid once read
    with psycopg.connect(dsn) as conn:
        conn.execute("""INSERT INTO investment.withdrawal_requests (id, account_id, user_id, amount, withdrawal_method,
                            destination_details, status, currency, payout_amount_minor, claimed_at, claimed_by_run,
                            payout_attempts, first_attempt_at, needs_operator, operator_case, created_at)
                        VALUES (%s, %s, %s, 33.00, 'stripe_payout', '{"bank_account_id": "ba_case"}', 'processing',
                                'usd', 3300, now(), 'earlier', 1, now(), 'Stripe does not know payout po_lost',
                                'payout_unknown', '2026-03-01')""", (rid, account, user))
    return rid, account, payout.id


def test_money_moves_only_after_a_money_approver_says_so(pg_server, template_db, webhook, stripe_standin,
                                                         engine, tmp_path) -> None:  # noqa: ANN001
    import psycopg

    from investment_jobs_dev.book import plan_book, seed_book

    names, dsn = stack_databases(pg_server, template_db, "approvals")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with psycopg.connect(dsn) as conn:
        seed_book(conn, plan_book(ACCOUNTS, SEED, date(2025, 6, 1), date(2025, 12, 20)), SEED)
    fill_days(dsn, date(2026, 1, 1), date(2026, 3, 31))
    withdrawals = held_withdrawals(dsn)
    case_request, case_account, case_payout = case_with_a_paid_payout(dsn, stripe_standin)
    balance_before = query(dsn, "SELECT current_balance FROM investment.accounts WHERE id = %s", (case_account,))[0][0]
    hook_url, received = webhook
    stack = Stack(home=tmp_path / "airflow", metadata_db=names["meta"], investment_dsn=dsn,
                  executor="LocalExecutor", extra_env={
                      "DISTRIBUTION_APPROVAL": "required", "DISTRIBUTION_APPROVAL_TIMEOUT": f"{TIMEOUT_SECONDS}s",
                      "MONEY_APPROVERS": "admin", "ALERT_WEBHOOK_URL": hook_url,
                      "WITHDRAWAL_REVIEW_THRESHOLD": "usd=1000", "WITHDRAWAL_REVIEW_TIMEOUT": "10m",
                      "OPERATOR_DECISIONS": "ask", "OPERATOR_CASE_TIMEOUT": "10m",
                      "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,junior:op",
                      "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                      "TASK_RETRIES": "1", "TASK_RETRY_DELAY_SECONDS": "2", "TASK_MAX_RETRY_DELAY_SECONDS": "5",
                      "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1"})
    try:
        stack.start()
        stack.airflow("dags", "unpause", "monthly_distribution")

        # 3. March gets no answer: nothing written, the failure alert goes out, the timeout is recorded.
        # (Its wait runs while the withdrawals are reviewed, another DAG: the test waits it out once.)
        march = trigger(stack, "2026-03")
        waiting(stack, march)

        # 4. Withdrawals: the routine one is paid as today; the large ones wait for the review.
        stack.airflow("dags", "unpause", "withdrawal_processing")
        run = wait_for("a withdrawal run asking for its review", lambda: [r for (r,) in meta(stack, """
            SELECT run_id FROM task_instance WHERE dag_id = 'withdrawal_processing'
            AND task_id = 'review_withdrawals' AND state = 'awaiting_input'""")])[0]
        page = waiting(stack, run, dag_id="withdrawal_processing", task="review_withdrawals")
        wait_for("the run's pay step", lambda: meta(stack, """SELECT 1 FROM task_instance
            WHERE dag_id = 'withdrawal_processing' AND run_id = %s AND task_id = 'pay' AND state = 'success'""",
                                                     (run,)))
        # (the stand-in logged the test's own payout for the operator case first)
        assert [r["withdrawal_request_id"] for r in stripe_standin.requests()][1:] == [withdrawals["routine"]]
        large, other = withdrawals["large"], withdrawals["declined"]
        approve = next(o for o in page["options"] if o.startswith("Approve") and o.endswith(large))
        decline = next(o for o in page["options"] if o.startswith("Decline") and o.endswith(other))
        assert large in page["body"] and other in page["body"] and "1500.00" in page["body"]
        answer(stack, run, [approve, decline], "destination not verified", "admin",
               dag_id="withdrawal_processing", task="review_withdrawals")
        # 5. The request that needs an operator: Stripe shows it paid, so it is marked completed.
        case_page = waiting(stack, run, dag_id="withdrawal_processing", task="resolve_operator_case", map_index=0)
        assert case_request in case_page["body"] and "payout_unknown" in case_page["body"]
        completed = next(o for o in case_page["options"] if o.startswith("Mark completed"))
        answer(stack, run, completed, "dashboard shows it paid", "admin", dag_id="withdrawal_processing",
               task="resolve_operator_case", map_index=0, payout_id=case_payout)
        assert finished(stack, run, "withdrawal_processing") == "success"
        sent = [r["withdrawal_request_id"] for r in stripe_standin.requests()]
        assert sent == [case_request, withdrawals["routine"], large] and other not in sent  # declined: no call
        assert query(dsn, """SELECT status, payout_id, needs_operator FROM investment.withdrawal_requests
                             WHERE id = %s""", (case_request,)) == [("completed", case_payout, None)]
        assert query(dsn, "SELECT current_balance FROM investment.accounts WHERE id = %s", (case_account,)) == [
            (balance_before - Decimal("33.00"),)]
        assert query(dsn, """SELECT count(*) FROM investment.transactions WHERE withdrawal_request_id = %s""",
                     (case_request,)) == [(1,)]
        assert query(dsn, """SELECT count(*) FROM investment.withdrawal_notifications
                             WHERE withdrawal_request_id = %s""", (case_request,)) == [(1,)]
        state = dict((r, (s, why, payout)) for r, s, why, payout in query(dsn, """
            SELECT id::text, status, rejection_reason, payout_id FROM investment.withdrawal_requests"""))
        assert state[other][:2] == ("rejected", "declined by admin: destination not verified")
        assert state[large][2] is not None and state[large][0] in ("processing", "completed")
        assert query(dsn, """SELECT choice, outcome, decided_by FROM investment.operator_decisions
                             WHERE kind = 'withdrawal_operator_case'""") == [(completed, "applied", "admin")]
        assert query(dsn, """SELECT choice, outcome, decided_by, request_ids::text[] FROM investment.operator_decisions
                             WHERE kind = 'withdrawal_review' ORDER BY choice""") == [
            ("approve", "applied", "admin", [large]), ("decline", "applied", "admin", [other])]
        summary = summary_of(stack, "withdrawal_processing", run)
        assert summary["review"]["approved"] == [large] and summary["review"]["declined"] == [other]

        # 3, continued: March's approval timed out meanwhile.
        assert finished(stack, march) == "failed"
        assert credited(dsn, "2026-03") == {}
        assert [d[:3] for d in decisions(dsn, "2026-03")] == [("timeout", "no answer", "timed_out")]
        timed_out = wait_for("the job_failed message of March", lambda: [
            m for m in received if "`job_failed`" in json.dumps(m) and "2026-03" in json.dumps(m)])
        assert "DISTRIBUTION_APPROVAL_TIMEOUT" in json.dumps(timed_out[0]) and TASK in json.dumps(timed_out[0])

        # 1. January waits; a refused answer asks again; an approver's approval credits the page's figures.
        january = trigger(stack, "2026-01")
        page = waiting(stack, january)
        assert credited(dsn, "2026-01") == {}
        assert "Totals by currency and product" in page["body"] and page["options"] == ["Approve", "Reject"]
        assert decisions(dsn, "2026-01") == []  # nothing is decided yet
        announced = wait_for("January's approval_waiting message", lambda: [
            m for m in received if "`approval_waiting`" in json.dumps(m) and january in json.dumps(m)])
        assert f"/dags/monthly_distribution/runs/{january}/tasks/{TASK}/required_actions" in json.dumps(announced[0])
        answer(stack, january, "Approve", "looks fine to me", "junior")
        page_again = waiting(stack, january, times=2)  # refused: the same question, asked again
        assert page_again["body"] == page["body"]
        assert decisions(dsn, "2026-01") == [("junior", "Approve", "refused", "junior is not in MONEY_APPROVERS (admin)")]
        assert credited(dsn, "2026-01") == {}
        answer(stack, january, "Approve", "checked against the engine's report", "admin")
        assert finished(stack, january) == "success"
        assert decisions(dsn, "2026-01")[1:] == [("admin", "Approve", "applied", "checked against the engine's report")]
        (figures,) = query(dsn, """SELECT figures FROM investment.operator_decisions
                                   WHERE period = '2026-01' AND outcome = 'applied'""")[0]
        paid = credited(dsn, "2026-01")
        assert paid and {cur: (int(t["accounts"]), Decimal(t["gross_profit"]), Decimal(t["performance_fees"]),
                               Decimal(t["net_profit"])) for cur, t in figures["totals_by_currency"].items()} == paid
        for cur, (_, _, _, net) in paid.items():  # the page said the same
            from investment_jobs.money import shown as as_shown

            assert f"**{as_shown(net, cur)}**" in page["body"]
        summary = summary_of(stack, "monthly_distribution", january)
        assert [(d["decided_by"], d["outcome"]) for d in summary["decisions"]] == [("junior", "refused"),
                                                                                   ("admin", "applied")]

        # 1b. A January day is rerun with a different return: the month's rerun asks about the drift;
        # the operator posts the correcting adjustment; the drift check is clean again.
        restated = query(dsn, """SELECT d.account_id::text, d.net_profit FROM investment.distributions d
                                 JOIN investment.products p ON p.id = d.product_id
                                 WHERE d.period = '2026-01' AND d.status = 'distributed' AND p.currency = 'usd'
                                 ORDER BY 1 LIMIT 1""")[0]
        query(dsn, """UPDATE investment.daily_performance SET daily_return = daily_return + 10,
                      closing_balance = closing_balance + 10 WHERE account_id = %s AND date = '2026-01-20'
                      RETURNING 1""", (restated[0],))
        recheck = trigger(stack, "2026-01", "drift")
        drift_page = waiting(stack, recheck, task="resolve_drift")
        assert restated[0] in drift_page["body"] and "Post correcting adjustments" in drift_page["options"]
        answer(stack, recheck, "Post correcting adjustments", "the engine restated the 20th", "admin",
               task="resolve_drift")
        assert finished(stack, recheck) == "success"
        (delta, amount, net_after), = query(dsn, """
            SELECT c.net_delta, t.amount, c.net_profit FROM investment.distribution_corrections c
            JOIN investment.transactions t ON t.id = c.transaction_id WHERE c.account_id = %s""", (restated[0],))
        assert amount == abs(delta) and net_after == restated[1] + delta and delta > 0
        assert credited(dsn, "2026-01") == paid  # the distributions themselves are not rewritten
        assert decisions(dsn, "2026-01")[-1] == ("admin", "Post correcting adjustments", "applied",
                                                 "the engine restated the 20th")

        # 2. February is rejected: nothing written, the run fails saying who and why.
        february = trigger(stack, "2026-02")
        waiting(stack, february)
        answer(stack, february, "Reject", "", "admin")  # without a reason: not taken, asked again
        waiting(stack, february, times=2)
        answer(stack, february, "Reject", "fees look doubled for Orion Growth", "admin")
        assert finished(stack, february) == "failed"
        assert credited(dsn, "2026-02") == {}
        assert query(dsn, "SELECT count(*) FROM investment.distribution_rates WHERE period = '2026-02'") == [(0,)]
        assert decisions(dsn, "2026-02") == [("admin", "Reject", "not_applied", "a rejection needs a reason"),
                                             ("admin", "Reject", "applied", "fees look doubled for Orion Growth")]
        failed = wait_for("the job_failed message of February", lambda: [
            m for m in received if "`job_failed`" in json.dumps(m) and "2026-02" in json.dumps(m)])
        assert "rejected by admin: fees look doubled for Orion Growth" in json.dumps(failed[0])

        assert query(dsn, "SELECT count(DISTINCT period) FROM investment.distributions") == [(1,)]
    finally:
        stop_and_keep_logs(stack, f"approvals-test-{worker}", pg_server, names.values(), 300_000)
