"""Failure alerts: one JSON log line, and a Slack-compatible post when ``ALERT_WEBHOOK_URL`` is set.

Used as every task's ``on_failure_callback`` (after its retries are exhausted), so an operator hears
which job, which business date or period, which task, and where its log is. A webhook that does
not answer never hides the failure itself: it is logged and the callback returns.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger("investment_jobs.alerts")
ERROR_TEXT_LIMIT = 500


def run_identity(context: Any) -> dict[str, Any]:
    """job_name, the business date or period the run is about, how it was triggered, its run id."""
    from investment_jobs import config
    from investment_jobs.business_dates import business_date_of, period_of

    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or context["dag"].dag_id
    logical = context.get("logical_date") or getattr(dag_run, "run_after", None)
    identity: dict[str, Any] = {"job_name": dag_id, "run_id": context.get("run_id"),
                                "trigger": str(getattr(getattr(dag_run, "run_type", None), "value",
                                                       getattr(dag_run, "run_type", None)))}
    if logical is not None:
        tz = config.cron_timezone()
        if dag_id == "monthly_distribution":
            identity["period"] = str(period_of(logical, tz))
        else:
            identity["business_date"] = business_date_of(logical, tz).isoformat()
    return identity


def failure_event(context: Any) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    return {
        "event": "job_failed", **run_identity(context),
        "failed_task": getattr(ti, "task_id", None),
        "try_number": getattr(ti, "try_number", None),
        "log_url": getattr(ti, "log_url", None),
        "error": None if error is None else f"{type(error).__name__}: {str(error)[:ERROR_TEXT_LIMIT]}",
        "success": False,
    }


def slack_message(event: dict[str, Any]) -> dict[str, Any]:
    when = event.get("business_date") or event.get("period") or "-"
    text = (f":rotating_light: *{event['job_name']}* failed for *{when}* "
            f"(task `{event['failed_task']}`, try {event['try_number']}, {event['trigger']} run)")
    detail = f"{event['error'] or 'no error message'}\n<{event['log_url']}|Open the task's log>"
    return {"text": f"{event['job_name']} failed for {when}: task {event['failed_task']}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                       {"type": "section", "text": {"type": "mrkdwn", "text": detail}}]}


def post_webhook(url: str, message: dict[str, Any], timeout: float = 10.0) -> bool:  # float-ok: seconds
    import requests

    try:
        response = requests.post(url, json=message, timeout=timeout)
    except requests.RequestException as exc:
        log.error("alert webhook unreachable: %s", type(exc).__name__)
        return False
    if response.status_code >= 300:
        log.error("alert webhook answered HTTP %s", response.status_code)
        return False
    return True


class JobFailureNotifier(BaseNotifier):
    """The package's failure callback: a JSON line always, a webhook post when configured."""

    def notify(self, context: Any) -> None:
        event = failure_event(context)
        log.error("%s", json.dumps(event, sort_keys=True, default=str))
        from investment_jobs import config

        url = config.alert_webhook_url()
        if url:
            event["alert_posted"] = post_webhook(url, slack_message(event))
