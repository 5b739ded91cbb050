"""The demo stack in a real browser: Debian's Chromium driven by Playwright.

Starts `python -m investment_jobs_dev.cli demo` (the code behind `make demo`) on free ports with
its own databases and a two-day backfill, logs in, opens `daily_performance`, checks that the
backfilled runs are green, that `monthly_distribution` shows their month pending with two of its
days arrived, that the backfill form and the DAG's docs show; then opens the fund view from the
navigation; and saves the screenshots the README uses under docs/screenshots/. Skipped, with the reason, when Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from investment_jobs.business_dates import last_complete_month
from investment_jobs_dev.standins.launcher import free_port
from tests.support.paths import PYTHON, ROOT
from tests.support.stack_runs import sign_in

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"
BACKFILL_DAYS = 2

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Chromium is not installed (Debian: apt-get install chromium); the UI test needs it"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make venv installs it)")
# A page that takes its time under load is waited for (a state, with a generous deadline), never
# failed on Playwright's 5-second default: found when the fund view's iframe drew after 5 s while
# three stacks shared two cores.
playwright.expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def demo(pg_server, tmp_path_factory):  # noqa: ANN001, ANN201
    """The demo stack on free ports; yields (url, admin password, metadata DSN, investment DSN)."""
    import psycopg

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    investment = pg_server.fresh_database(f"ij_ui_investment_{worker}")
    meta = pg_server.fresh_database(f"ij_ui_meta_{worker}")
    home = tmp_path_factory.mktemp("ui-airflow")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "TASK_RETR"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONN_INVESTMENT_DB": investment,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta.replace("postgresql://", "postgresql+psycopg://", 1),
        "ML_ENGINE_STANDIN_PORT": str(free_port()),
        "STRIPE_STANDIN_PORT": str(free_port()),
    })
    log = (ROOT / ".local" / f"ui-demo-{worker}.log").open("w")
    proc = subprocess.Popen([PYTHON, "-m", "investment_jobs_dev.cli", "demo", "--accounts", "30", "--port", str(port),
                             "--days", str(BACKFILL_DAYS)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 420
        finished: dict[str, str] = {}
        open_backfills = 1
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with psycopg.connect(meta) as conn:
                    # every backfilled day with a finished run of any type: the backfill's, or a
                    # scheduled one the scheduler made for the newest day
                    finished = dict(conn.execute(
                        """SELECT DISTINCT ON (partition_key) partition_key, state FROM dag_run
                           WHERE dag_id = 'daily_performance' AND state IN ('success', 'failed')
                           ORDER BY partition_key, end_date DESC""").fetchall())
                    # the scheduler closes the backfill a loop later; until then the UI shows its banner
                    open_backfills = conn.execute("SELECT count(*) FROM backfill WHERE completed_at IS NULL"
                                                  ).fetchone()[0]
            except psycopg.Error:
                finished = {}
            if len(finished) >= BACKFILL_DAYS and not open_backfills:
                break
            time.sleep(3)
        assert len(finished) >= BACKFILL_DAYS, \
            f"the backfill did not finish: {finished}; see .local/ui-demo-{worker}.log"
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        yield f"http://127.0.0.1:{port}", password, meta, investment
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the demo's own handler stops Airflow and the stand-ins
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        pg_server.drop_database(f"ij_ui_investment_{worker}")
        pg_server.drop_database(f"ij_ui_meta_{worker}")


def launch(p):  # noqa: ANN001, ANN201 - playwright's objects
    """Debian's Chromium, headless, without the calls home a test machine cannot make."""
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def month_runs(meta: str, period: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(meta) as conn:
        return conn.execute("SELECT run_id FROM dag_run WHERE dag_id = 'monthly_distribution' AND partition_key = %s",
                            (period,)).fetchall()


def test_an_operator_sees_the_backfilled_days_green_the_pending_month_and_the_docs(demo) -> None:  # noqa: ANN001
    url, password, _, _ = demo
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(page, url, password)

        page.goto(f"{url}/dags/daily_performance")
        page.wait_for_load_state("networkidle")
        playwright.expect(page.get_by_text("investment-ops")).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "daily_performance.png"))

        page.goto(f"{url}/dags/daily_performance/runs")
        page.wait_for_load_state("networkidle")
        states: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the runs table renders after the page's own requests
            states = re.findall(r"\b(Success|Failed|Running|Queued|Up For Retry)\b", page.inner_text("body"))
            if states.count("Success") >= BACKFILL_DAYS:
                break
            page.wait_for_timeout(500)
        assert states.count("Success") >= BACKFILL_DAYS and "Failed" not in states, states
        playwright.expect(page.get_by_text("Backfill", exact=True).first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "daily_performance_runs.png"))

        # The month the backfill began: pending, with which of its days have arrived.
        month = last_complete_month(datetime.now(UTC).date())  # clock-ok: the demo's month
        arrived = f"{BACKFILL_DAYS} / {month.last_day.day}"
        page.goto(f"{url}/dags/monthly_distribution")
        page.get_by_text(re.compile(r"\d+ Pending Dag Runs?")).click()
        pending = page.get_by_role("dialog")
        playwright.expect(pending).to_contain_text(month.key)
        playwright.expect(pending).to_contain_text(arrived)
        pending.get_by_text(arrived).click()
        playwright.expect(page.get_by_text("investment.daily_performance").last).to_be_visible()
        playwright.expect(page.get_by_text(month.first_day.isoformat()).last).to_be_visible()
        # scroll the list to its end, where the arrived days are, above the missing ones
        page.get_by_text(month.first_day.isoformat()).last.hover()
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(600)
        page.screenshot(path=str(SCREENSHOTS / "monthly_distribution_pending.png"))
        assert month_runs(demo[2], month.key) == []  # nothing distributed before its days are stored

        # The operator's one action: a backfill of the missing days, from the Trigger button.
        page.goto(f"{url}/dags/daily_performance")
        page.get_by_role("button", name="Trigger").click()
        page.get_by_role("dialog").get_by_text("Backfill", exact=True).first.click()
        playwright.expect(page.get_by_role("dialog")).to_contain_text("Date Range")
        page.wait_for_timeout(600)
        page.screenshot(path=str(SCREENSHOTS / "daily_performance_backfill.png"))

        page.goto(f"{url}/dags/daily_performance")
        page.get_by_role("button", name="Dag Docs").click()
        docs = page.get_by_role("dialog")
        playwright.expect(docs).to_contain_text("every active account's performance for ONE business date")
        playwright.expect(docs).to_contain_text("When it fails")
        page.wait_for_timeout(600)  # let the dialog finish fading in before the picture
        page.screenshot(path=str(SCREENSHOTS / "daily_performance_docs.png"))
        browser.close()


def test_the_head_of_operations_reads_the_fund_from_the_navigation(demo, airflow_db, monkeypatch) -> None:  # noqa: ANN001
    """Log in, open *Fund* from the navigation: every section renders from the demo's book (with the
    month before the demo's distributed by the real job, its days stored directly), a filter changes
    the figures, an account search finds one."""
    import psycopg

    from investment_jobs.views.summaries import rebuild_all
    from tests.support.airflow_runs import run_dag
    from tests.support.book import fill_days

    url, password, _, investment = demo
    earlier = last_complete_month(datetime.now(UTC).date()).previous()  # clock-ok: the demo's month
    fill_days(investment, earlier.first_day, earlier.last_day)
    with psycopg.connect(investment) as conn:
        rebuild_all(conn, "UTC")  # those days summarised as the daily job would have
        conn.commit()
        account_id, product_id = conn.execute(
            """SELECT account_id::text, product_id::text FROM investment.daily_performance
               ORDER BY date DESC, account_id LIMIT 1""").fetchone()
    monkeypatch.setenv("AIRFLOW_CONN_INVESTMENT_DB", investment)
    assert str(run_dag("monthly_distribution", earlier.first_day).state) == "success"
    with playwright.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        sign_in(page, url, password)
        page.goto(url)
        page.get_by_role("link", name="Fund").or_(page.get_by_role("button", name="Fund")).first.click()
        page.wait_for_url(re.compile(r".*/plugin/fund.*"))
        fund = page.frame_locator("iframe").first
        for heading in ("Book", "Performance", "Distributions", "Payouts", "Data quality", "Jobs", "An account"):
            playwright.expect(fund.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        fund.locator("input[name=start]").fill(earlier.first_day.isoformat())
        fund.get_by_role("button", name="Show").click()
        playwright.expect(fund.locator(f"#applied[data-start='{earlier.first_day}']")).to_have_count(1)
        playwright.expect(fund.locator("body[data-charts-drawn]")).to_have_count(1)
        drawn = int(fund.locator("body").get_attribute("data-charts-drawn"))
        assert drawn >= 10, drawn  # AUM and flows per currency, returns, spread, distributions, payouts, quality
        for name in ("book", "performance", "spread", "distributions", "quality"):
            assert fund.locator(f"[data-table={name}] tbody tr").count() > 0, name
        assert earlier.key in (fund.locator("[data-table=distributions]").text_content() or "")  # a collapsed table
        playwright.expect(fund.locator("[data-table=jobs] tbody tr")).to_have_count(6)
        all_accounts = int(fund.locator("[data-figure-name=accounts]").inner_text())
        page.wait_for_timeout(800)
        page.screenshot(path=str(SCREENSHOTS / "fund_view.png"), full_page=True)
        fund.locator("#distributions").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOTS / "fund_view_distributions.png"))

        fund.locator("select[name=product]").select_option(product_id)
        fund.get_by_role("button", name="Show").click()
        playwright.expect(fund.locator(f"#applied[data-product='{product_id}']")).to_have_count(1)
        one_product = int(fund.locator("[data-figure-name=accounts]").inner_text())
        assert 0 < one_product < all_accounts

        fund.locator("input[name=account]").fill(account_id)
        fund.get_by_role("button", name="Show").click()
        playwright.expect(fund.locator(f"#applied[data-account='{account_id}']")).to_have_count(1)
        playwright.expect(fund.locator("[data-table=account-facts]")).to_contain_text(account_id)
        fund.locator("#account").scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SCREENSHOTS / "fund_view_account.png"))
        browser.close()
