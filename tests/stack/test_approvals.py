"""Four eyes on money, on a real scheduler: LocalExecutor, PostgreSQL metadata, an API server, a
scheduler and a DAG processor, each its own process. Decisions are given through the REST API, as
the UI's Required Actions gives them (issue 15).

One month each, in the order an operator would meet them:

1. 2026-01: the run computes the month and waits. The waiting approval is announced with a link to
   its page. A user outside ``MONEY_APPROVERS`` approves: refused, recorded, asked again. An
   approver approves: the distributions exist and equal the figures the page showed.
2. 2026-02: an approver rejects with a reason: nothing is written, the run fails saying who and
   why, the audit row exists.
3. 2026-03: nobody answers within ``DISTRIBUTION_APPROVAL_TIMEOUT``: nothing is written, the
   failure alert is delivered, the timeout is recorded.
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
from tests.support.paths import ROOT
from tests.support.stack_runs import meta, summary_of, wait_for

pytestmark = pytest.mark.integration

ACCOUNTS = 12
SEED = 43
TASK = "approve_distribution"
TIMEOUT_SECONDS = 90  # long enough for the test to answer, short enough to wait out once


def hitl_path(run_id: str) -> str:
    return f"/api/v2/dags/monthly_distribution/dagRuns/{quote(run_id, safe='')}/taskInstances/{TASK}/-1/hitlDetails"


def trigger(stack: Stack, period: str) -> str:
    run_id = f"manual__approval_{period}"
    status, body = stack.api("POST", "/api/v2/dags/monthly_distribution/dagRuns",
                             {"logical_date": None, "partition_key": period, "dag_run_id": run_id})
    assert status == 200, body
    return run_id


def parked(stack: Stack, run_id: str) -> int:
    """How many times the scheduler has seen the task's process end with the task parked.

    An answer before the scheduler has seen that (within its first loop, under a second after the
    question) trips an Airflow 3.3.2 race: the stale "process ended" event then finds the resumed
    task queued and fails it. A person never answers that fast; the test waits as long as it takes."""
    log = (stack.home / "scheduler.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if "TaskInstance Finished:" in line
               and f"task_id={TASK}, run_id={run_id}," in line and "state=awaiting_input" in line)


def waiting(stack: Stack, run_id: str, times: int = 1) -> dict:
    """The approval page of the run once its task waits (for the ``times``-th time) for an answer."""
    def asked() -> dict | None:
        if parked(stack, run_id) < times:
            return None
        state = meta(stack, """SELECT state FROM task_instance WHERE dag_id = 'monthly_distribution'
                               AND run_id = %s AND task_id = %s""", (run_id, TASK))
        if state != [("awaiting_input",)]:
            return None
        status, body = stack.api("GET", hitl_path(run_id))
        return body if status == 200 and not body["response_received"] else None  # type: ignore[index]

    return wait_for(f"{run_id} to wait for its approval", asked)


def answer(stack: Stack, run_id: str, choice: str, reason: str, user: str) -> None:
    status, body = stack.api("PATCH", hitl_path(run_id), {"chosen_options": [choice], "params_input": {"reason": reason}},
                             token=stack.token(user))
    assert status == 200, (status, body)


def finished(stack: Stack, run_id: str) -> str:
    return wait_for(f"{run_id} to finish", lambda: [s for (s,) in meta(stack, """
        SELECT state FROM dag_run WHERE dag_id = 'monthly_distribution' AND run_id = %s""", (run_id,))
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


def test_a_month_is_credited_only_after_a_money_approver_approves_it(pg_server, template_db, webhook,
                                                                     tmp_path) -> None:  # noqa: ANN001
    import psycopg

    from investment_jobs_dev.book import plan_book, seed_book

    if pg_server.host.startswith("/"):
        pytest.skip("the stack's processes need PostgreSQL over TCP at 127.0.0.1:5432")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    names = {k: f"ij_approvals_{k}_{worker}" for k in ("investment", "meta")}
    dsn = pg_server.fresh_database(names["investment"], template=template_db)
    pg_server.fresh_database(names["meta"])
    with psycopg.connect(dsn) as conn:
        seed_book(conn, plan_book(ACCOUNTS, SEED, date(2025, 6, 1), date(2025, 12, 20)), SEED)
    fill_days(dsn, date(2026, 1, 1), date(2026, 3, 31))
    hook_url, received = webhook
    stack = Stack(home=tmp_path / "airflow", metadata_db=names["meta"], investment_dsn=dsn,
                  executor="LocalExecutor", extra_env={
                      "DISTRIBUTION_APPROVAL": "required", "DISTRIBUTION_APPROVAL_TIMEOUT": f"{TIMEOUT_SECONDS}s",
                      "MONEY_APPROVERS": "admin", "ALERT_WEBHOOK_URL": hook_url,
                      "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,junior:op",
                      "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                      "TASK_RETRIES": "1", "TASK_RETRY_DELAY_SECONDS": "2", "TASK_MAX_RETRY_DELAY_SECONDS": "5",
                      "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1"})
    try:
        stack.start()
        stack.airflow("dags", "unpause", "monthly_distribution")

        # 1. January waits; a refused answer asks again; an approver's approval credits the page's figures.
        january = trigger(stack, "2026-01")
        page = waiting(stack, january)
        assert credited(dsn, "2026-01") == {}
        assert "Totals by currency and product" in page["body"] and page["options"] == ["Approve", "Reject"]
        shown = query(dsn, "SELECT figures FROM investment.operator_decisions") or None
        assert shown is None  # nothing is decided yet
        announced = wait_for("the approval_waiting message", lambda: [
            m for m in received if "`approval_waiting`" in json.dumps(m)])
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
            from investment_jobs.jobs.monthly_review import shown as as_shown

            assert f"**{as_shown(net, cur)}**" in page["body"]
        summary = summary_of(stack, "monthly_distribution", january)
        assert [(d["decided_by"], d["outcome"]) for d in summary["decisions"]] == [("junior", "refused"),
                                                                                   ("admin", "applied")]

        # 2. February is rejected: nothing written, the run fails saying who and why.
        february = trigger(stack, "2026-02")
        waiting(stack, february)
        answer(stack, february, "Reject", "fees look doubled for Orion Growth", "admin")
        assert finished(stack, february) == "failed"
        assert credited(dsn, "2026-02") == {}
        assert query(dsn, "SELECT count(*) FROM investment.distribution_rates WHERE period = '2026-02'") == [(0,)]
        assert decisions(dsn, "2026-02") == [("admin", "Reject", "applied", "fees look doubled for Orion Growth")]
        failed = wait_for("the job_failed message of February", lambda: [
            m for m in received if "`job_failed`" in json.dumps(m) and "2026-02" in json.dumps(m)])
        assert "rejected by admin: fees look doubled for Orion Growth" in json.dumps(failed[0])

        # 3. March gets no answer: nothing written, the failure alert goes out, the timeout is recorded.
        march = trigger(stack, "2026-03")
        waiting(stack, march)
        assert finished(stack, march) == "failed"
        assert credited(dsn, "2026-03") == {}
        assert [d[:3] for d in decisions(dsn, "2026-03")] == [("timeout", "no answer", "timed_out")]
        timed_out = wait_for("the job_failed message of March", lambda: [
            m for m in received if "`job_failed`" in json.dumps(m) and "2026-03" in json.dumps(m)])
        assert "DISTRIBUTION_APPROVAL_TIMEOUT" in json.dumps(timed_out[0]) and TASK in json.dumps(timed_out[0])
        assert query(dsn, "SELECT count(DISTINCT period) FROM investment.distributions") == [(1,)]
    finally:
        stack.stop()
        log_dir = ROOT / ".local" / f"approvals-test-{worker}"
        log_dir.mkdir(parents=True, exist_ok=True)
        for log in (tmp_path / "airflow").glob("*.log"):
            (log_dir / log.name).write_text(log.read_text(errors="replace")[-300_000:])
        for name in names.values():
            pg_server.drop_database(name)
