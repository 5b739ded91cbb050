"""An operator approves a month in the browser (issue 15): Debian's Chromium driven by Playwright.

A real scheduler and API server (tests/stack's Stack, LocalExecutor) with a month of stored days;
monthly_distribution for that month computes its figures and waits. The operator logs in, opens
Browse → Required Actions, reads the month's totals on the approval page, approves, and sees the
run finish; the distributions then exist. Screenshots go to docs/screenshots/ for the README.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from investment_jobs_dev.stack import Stack
from tests.support.book import fill_days
from tests.support.paths import ROOT
from tests.support.stack_runs import meta, sign_in, stack_databases, stop_and_keep_logs, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PERIOD = "2026-01"
RUN_ID = "manual__approve_in_the_browser"
TASK = "approve_distribution"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Chromium is not installed (Debian: apt-get install chromium); the UI test needs it"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make venv installs it)")


def parked(stack: Stack) -> bool:
    """The scheduler has seen the task's process end with it parked (see tests/stack/test_approvals)."""
    log = (stack.home / "scheduler.log").read_text(errors="replace")
    return any("TaskInstance Finished:" in line and f"task_id={TASK}, run_id={RUN_ID}," in line
               and "state=awaiting_input" in line for line in log.splitlines())


def test_an_operator_reads_the_months_totals_approves_and_sees_the_run_finish(pg_server, template_db,
                                                                             tmp_path) -> None:  # noqa: ANN001
    import psycopg

    from investment_jobs.money import shown
    from investment_jobs_dev.book import plan_book, seed_book

    names, dsn = stack_databases(pg_server, template_db, "hitl_ui")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with psycopg.connect(dsn) as conn:
        seed_book(conn, plan_book(20, 47, date(2025, 6, 1), date(2025, 12, 20)), 47)
    fill_days(dsn, date(2026, 1, 1), date(2026, 1, 31))
    stack = Stack(home=tmp_path / "airflow", metadata_db=names["meta"], investment_dsn=dsn,
                  executor="LocalExecutor", extra_env={
                      "DISTRIBUTION_APPROVAL": "required", "DISTRIBUTION_REVIEW_FEE_ALERT": "usd=10",
                      "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1"})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        stack.start()
        stack.airflow("dags", "unpause", "monthly_distribution")
        status, body = stack.api("POST", "/api/v2/dags/monthly_distribution/dagRuns",
                                 {"logical_date": None, "partition_key": PERIOD, "dag_run_id": RUN_ID})
        assert status == 200, body
        wait_for("the month to wait for its approval", lambda: parked(stack) and meta(stack, """
            SELECT 1 FROM task_instance WHERE run_id = %s AND task_id = %s AND state = 'awaiting_input'""",
                                                                                   (RUN_ID, TASK)))
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM investment.distributions").fetchone() == (0,)
        password = json.loads((stack.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(page, stack.url, password)

            page.goto(f"{stack.url}/required_actions")
            subject = page.get_by_text(f"Approve {PERIOD}:").first
            playwright.expect(subject).to_be_visible(timeout=60_000)
            page.wait_for_timeout(600)
            page.screenshot(path=str(SCREENSHOTS / "required_actions.png"))

            page.goto(f"{stack.url}/dags/monthly_distribution/runs/{RUN_ID}/tasks/{TASK}/required_actions")
            playwright.expect(page.get_by_text("Totals by currency and product")).to_be_visible(timeout=60_000)
            playwright.expect(page.get_by_text("Anomalies").first).to_be_visible()
            page.wait_for_timeout(600)
            page.screenshot(path=str(SCREENSHOTS / "monthly_distribution_approval.png"), full_page=True)
            text = page.inner_text("body")
            page.get_by_role("textbox").first.fill("checked against the engine's monthly report")
            page.get_by_role("button", name="Approve").click()

            wait_for("the run to finish", lambda: [s for (s,) in meta(stack, """
                SELECT state FROM dag_run WHERE run_id = %s AND state IN ('success', 'failed')""", (RUN_ID,))],
                     timeout=600)
            page.goto(f"{stack.url}/dags/monthly_distribution/runs/{RUN_ID}")
            playwright.expect(page.get_by_text("Success").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(800)
            page.screenshot(path=str(SCREENSHOTS / "monthly_distribution_approved.png"))
            browser.close()

        assert meta(stack, "SELECT state FROM dag_run WHERE run_id = %s", (RUN_ID,)) == [("success",)]
        with psycopg.connect(dsn) as conn:
            credited = conn.execute("""SELECT p.currency, sum(d.net_profit) FROM investment.distributions d
                                       JOIN investment.products p ON p.id = d.product_id GROUP BY 1""").fetchall()
            decided = conn.execute("SELECT decided_by, choice, outcome, reason FROM investment.operator_decisions"
                                   ).fetchall()
        assert credited and decided == [("admin", "Approve", "applied", "checked against the engine's monthly report")]
        for currency, net in credited:  # the page the operator read showed these totals
            assert shown(net, currency) in text, (currency, net)
    finally:
        stop_and_keep_logs(stack, f"hitl-ui-test-{worker}", pg_server, names.values(), 300_000)
