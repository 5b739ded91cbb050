"""Helpers of the tests that drive a real scheduler (tests/stack): wait for a state, read the
metadata database, read a run's summary through the REST API as an operator would."""

from __future__ import annotations

import json
import time

from investment_jobs_dev.stack import Stack

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
