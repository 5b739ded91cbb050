"""Helpers of the tests that drive a real scheduler (tests/stack): wait for a state, read the
metadata database, read a run's summary through the REST API as an operator would."""

from __future__ import annotations

import json
import time
from pathlib import Path

from investment_jobs_dev.stack import Stack
from tests.support.paths import ROOT

WAIT = 900  # seconds: a generous deadline for a state, never a timing assertion


def wait_for(what: str, probe, timeout: float = WAIT, every: float = 2):  # noqa: ANN001, ANN201  # float-ok
    """``probe()`` until it returns something truthy; fail naming ``what`` (and its last answer)."""
    deadline, answer = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last answer: {answer!r}")


def meta(stack: Stack, query: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack.metadata_dsn) as conn:
        return conn.execute(query, params).fetchall()


def logged_summary(stack: Stack, dag_id: str, run_id: str) -> dict:
    """The JSON summary line of a run's summarise task, from its log through the REST API (a
    failed task pushes no XCom; an operator reads the same line in the UI)."""
    from urllib.parse import quote

    status, body = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
                                    "/taskInstances/summarise/logs/1?full_content=true")
    assert status == 200, body
    for entry in body["content"]:  # type: ignore[index]
        text = entry.get("event", "") if isinstance(entry, dict) else str(entry)
        if text.startswith("{") and '"job_name"' in text and '"period"' in text:
            return json.loads(text)
    raise AssertionError(f"no summary line in the log of {dag_id} {run_id}")


def summary_of(stack: Stack, dag_id: str, run_id: str) -> dict:
    """The summarise task's XCom (its JSON summary line) of one run, through the REST API."""
    from urllib.parse import quote

    status, body = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
                                    "/taskInstances/summarise/xcomEntries/return_value?deserialize=true")
    assert status == 200, body
    value = body["value"]  # type: ignore[index]
    return value if isinstance(value, dict) else json.loads(value)


def stack_databases(pg_server, template_db: str, prefix: str) -> tuple[dict[str, str], str]:  # noqa: ANN001
    """A fresh migrated investment database and an empty metadata one for a test's stack:
    (their names, the investment DSN). The stack's processes need PostgreSQL over TCP."""
    import os

    import pytest

    if pg_server.host.startswith("/"):
        pytest.skip("the stack's processes need PostgreSQL over TCP at 127.0.0.1:5432")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    names = {k: f"ij_{prefix}_{k}_{worker}" for k in ("investment", "meta")}
    dsn = pg_server.fresh_database(names["investment"], template=template_db)
    pg_server.fresh_database(names["meta"])
    return names, dsn


def stop_and_keep_logs(stack: Stack, label: str, pg_server, databases, keep: int = 300_000) -> Path:  # noqa: ANN001
    """Stop the stack, keep the tail of each process's log under .local/<label>/ (CI artefacts),
    and drop the test's databases."""
    stack.stop()
    log_dir = ROOT / ".local" / label
    log_dir.mkdir(parents=True, exist_ok=True)
    for log in stack.home.glob("*.log"):
        (log_dir / log.name).write_text(log.read_text(errors="replace")[-keep:])
    for name in databases:
        pg_server.drop_database(name)
    return log_dir


def sign_in(page, url: str, password: str, user: str = "admin") -> None:  # noqa: ANN001
    """Log in to the Airflow UI (the simple auth manager's form) in a Playwright page."""
    page.goto(f"{url}/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
