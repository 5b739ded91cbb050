"""The webhook messages of each event, without Airflow: what an operator reads in the channel."""

from __future__ import annotations

import pytest

from investment_jobs.operations.alerts import date_ranges, slack_message


@pytest.mark.parametrize(("days", "ranges"), [
    ([], []),
    (["2026-02-10"], ["2026-02-10"]),
    (["2026-02-11", "2026-02-10"], ["2026-02-10 … 2026-02-11 (2 days)"]),
    (["2026-02-10", "2026-02-12", "2026-02-13", "2026-02-28", "2026-03-01"],
     ["2026-02-10", "2026-02-12 … 2026-02-13 (2 days)", "2026-02-28 … 2026-03-01 (2 days)"]),
    (["(unknown: the investment database did not answer)"], ["(unknown: the investment database did not answer)"]),
])
def test_missing_dates_read_as_ranges(days: list[str], ranges: list[str]) -> None:
    assert date_ranges(days) == ranges


def context_line(message: dict) -> str:
    return message["blocks"][-1]["elements"][0]["text"]


def test_a_missed_deadline_names_the_job_the_date_and_the_missing_days() -> None:
    message = slack_message({"event": "deadline_missed", "job_name": "daily_performance",
                             "business_date": "2026-03-09", "deadline": "2026-03-10 06:00:00+00:00",
                             "state": "running", "url": "http://airflow/dags/daily_performance/runs/x",
                             "missing_dates": [f"2026-03-{d:02d}" for d in range(1, 10)]})
    assert message["text"] == "daily_performance missed its deadline for 2026-03-09"
    assert "2026-03-01 … 2026-03-09 (9 days)" in message["blocks"][1]["text"]["text"]
    assert context_line(message) == "event `deadline_missed` · job `daily_performance` · 2026-03-09"


def test_a_restated_distributed_month_says_nothing_was_paid_again() -> None:
    message = slack_message({"event": "distribution_drift", "job_name": "daily_performance",
                             "business_date": "2026-02-15", "period": "2026-02", "count": 3,
                             "account_ids": ["a", "b"]})
    assert message["text"] == "daily_performance restated 2026-02-15: 2026-02 drifted"
    assert "a, b …" in message["blocks"][1]["text"]["text"] and "Nothing was paid again" in str(message)
    assert context_line(message).startswith("event `distribution_drift`")


def test_a_failure_keeps_its_message() -> None:
    message = slack_message({"event": "job_failed", "job_name": "monthly_distribution", "period": "2026-02",
                             "failed_task": "distribute", "try_number": 3, "trigger": "scheduled",
                             "error": "Boom: x", "log_url": "http://airflow/log"})
    assert message["text"] == "monthly_distribution failed for 2026-02: task distribute"
    assert context_line(message) == "event `job_failed` · job `monthly_distribution` · 2026-02"


def test_a_waiting_approval_links_to_its_page_and_says_until_when() -> None:
    message = slack_message({"event": "approval_waiting", "job_name": "monthly_distribution", "period": "2026-02",
                             "subject": "Approve 2026-02: 12 account(s), usd net 100.00", "accounts": 12,
                             "respond_by": "2026-03-03T01:00:00+00:00",
                             "url": "http://airflow/dags/monthly_distribution/runs/r/tasks/approve_distribution"
                                    "/required_actions?map_index=-1"})
    assert message["text"] == "monthly_distribution waits for an approval of 2026-02"
    detail = message["blocks"][1]["text"]["text"]
    assert "2026-03-03T01:00:00+00:00" in detail and "/required_actions?map_index=-1|Open the Required Action>" in detail
    assert context_line(message) == "event `approval_waiting` · job `monthly_distribution` · 2026-02"
