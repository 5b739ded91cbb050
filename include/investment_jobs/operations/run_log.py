"""The lines a run logs for an operator to grep, and how a run's summary finishes it.

Every run logs one JSON line when it starts (``job_started``) and one when it ends
(``job_finished``), next to the job's own summary line; a failed task's line is the failure
notifier's ``job_failed`` (operations/alerts.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("investment_jobs")


def log_summary(summary: dict[str, Any]) -> None:
    """One structured JSON line: what the run did, readable in the task log in the UI."""
    log.info("%s", json.dumps(summary, sort_keys=True, default=str))


def job_started(context: Any) -> None:
    """The run's first JSON line: which job, for which date or period, how it was triggered."""
    from investment_jobs.operations.alerts import run_identity

    log.info("%s", json.dumps({"event": "job_started", **run_identity(context)}, sort_keys=True, default=str))


def job_finished(context: Any, summary: dict[str, Any], success: bool) -> None:
    """The run's last JSON line: every job's summary says what it ``processed`` and its ``error_count``."""
    from investment_jobs.operations.alerts import run_identity

    log.info("%s", json.dumps({"event": "job_finished", **run_identity(context),
                               "duration_ms": summary.get("duration_ms"), "processed": summary.get("processed"),
                               "errors": summary.get("error_count", 0), "success": success},
                              sort_keys=True, default=str))


def finish_run(summary: dict[str, Any], started_at: str, context: Any,
               check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Finish a run's summary: its duration, one JSON log line, the job_finished line; then fail the
    run when ``check`` raises (it says why an operator must act), without a retry: a retry would
    give the same answer."""
    import pendulum
    from airflow.sdk.exceptions import AirflowFailException

    elapsed = pendulum.now("UTC") - pendulum.parse(started_at)  # clock-ok: a duration
    summary["duration_ms"] = int(elapsed.total_seconds() * 1000)
    log_summary(summary)
    try:
        if check is not None:
            check(summary)
    except Exception as exc:
        job_finished(context, summary, success=False)
        raise AirflowFailException(str(exc)) from None
    job_finished(context, summary, success=True)
    return summary
