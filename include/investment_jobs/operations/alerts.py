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
    from investment_jobs.business_dates import business_date_of_run, period_of_run

    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or context["dag"].dag_id
    key = context.get("partition_key") or getattr(dag_run, "partition_key", None)
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    run_after = getattr(dag_run, "run_after", None)
    identity: dict[str, Any] = {"job_name": dag_id, "run_id": context.get("run_id"),
                                "trigger": str(getattr(getattr(dag_run, "run_type", None), "value",
                                                       getattr(dag_run, "run_type", None)))}
    if key or logical or run_after:
        tz = config.cron_timezone()
        try:
            if dag_id == "monthly_distribution":
                identity["period"] = str(period_of_run(key, logical, run_after, tz))
            else:
                identity["business_date"] = business_date_of_run(key, logical, run_after, tz).isoformat()
        except ValueError:
            identity["partition_key"] = key  # an odd key is reported as it is, never hides the event
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
    """The webhook message of an event (``job_failed``, ``deadline_missed``, ``distribution_drift``,
    ``approval_waiting``),
    Slack's blocks format."""
    when = event.get("business_date") or event.get("period") or "-"
    if event["event"] == "distribution_drift":
        accounts = ", ".join(event["account_ids"]) + (" …" if event["count"] > len(event["account_ids"]) else "")
        text = (f":warning: *{event['job_name']}* restated *{when}*: {event['count']} account(s) of "
                f"*{event['period']}*, already distributed, no longer add up to their distribution")
        detail = (f"accounts: {accounts}\nNothing was paid again. Rerun monthly_distribution for "
                  f"{event['period']} to see the differences.")
        return _message(event, f"{event['job_name']} restated {when}: {event['period']} drifted", text, detail)
    if event["event"] == "approval_waiting":
        text = (f":raised_hand: *{event['job_name']}* waits for an approval of *{when}*: {event['subject']}")
        link = f"<{event['url']}|Open the Required Action>" if event.get("url") else "Browse → Required Actions"
        detail = f"Approve or reject by {event['respond_by']} (after that nothing is written). {link}"
        return _message(event, f"{event['job_name']} waits for an approval of {when}", text, detail)
    if event["event"] == "deadline_missed":
        missing = ", ".join(date_ranges(event.get("missing_dates") or [])) or "none"
        text = (f":alarm_clock: *{event['job_name']}* missed its deadline for *{when}* "
                f"(due {event['deadline']}; {event['state']})")
        detail = f"business dates with no stored partition: {missing}\n<{event['url']}|Open the run>"
        return _message(event, f"{event['job_name']} missed its deadline for {when}", text, detail)
    text = (f":rotating_light: *{event['job_name']}* failed for *{when}* "
            f"(task `{event['failed_task']}`, try {event['try_number']}, {event['trigger']} run)")
    detail = f"{event['error'] or 'no error message'}\n<{event['log_url']}|Open the task's log>"
    return _message(event, f"{event['job_name']} failed for {when}: task {event['failed_task']}", text, detail)


def _message(event: dict[str, Any], summary: str, text: str, detail: str) -> dict[str, Any]:
    """Two sections for people, and a context line naming the event, job and date for filters."""
    when = event.get("business_date") or event.get("period") or "-"
    return {"text": summary,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                       {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
                       {"type": "context", "elements": [{"type": "mrkdwn", "text": (
                           f"event `{event['event']}` · job `{event['job_name']}` · {when}")}]}]}


def date_ranges(days: list[str]) -> list[str]:
    """ISO dates as runs of consecutive days (``2026-03-01 … 2026-03-31``): a long outage stays one line."""
    from datetime import date, timedelta

    runs: list[list[date]] = []
    for day in sorted({date.fromisoformat(d) for d in days if len(d) == 10 and d[:4].isdigit()}):
        if runs and day - runs[-1][1] == timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    spans = [a.isoformat() if a == b else f"{a.isoformat()} … {b.isoformat()} ({(b - a).days + 1} days)"
             for a, b in runs]
    return spans + [d for d in days if not (len(d) == 10 and d[:4].isdigit())]


def announce(event: dict[str, Any]) -> dict[str, Any]:
    """One JSON log line always, and a post to ALERT_WEBHOOK_URL when it is set; a webhook that
    does not answer is logged and never hides the event."""
    from investment_jobs import config

    log.error("%s", json.dumps(event, sort_keys=True, default=str))
    url = config.alert_webhook_url()
    if url:
        event["alert_posted"] = post_webhook(url, slack_message(event))
    return event


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


def announce_distribution_drift(summary: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """When a daily run restated a day of a month already distributed (the month's drift rule,
    for the accounts it wrote), say so: the run itself succeeded, the month needs a look."""
    drift = summary.get("distribution_drift") or {}
    if not drift.get("count"):
        return None
    return announce({"event": "distribution_drift", **run_identity(context), "period": drift["period"],
                     "count": drift["count"], "account_ids": drift["account_ids"]})


class JobFailureNotifier(BaseNotifier):
    """The package's failure callback: a JSON line always, a webhook post when configured."""

    def notify(self, context: Any) -> None:
        announce(failure_event(context))
