"""Failure alerts (JSON line + Slack-compatible webhook) and each run's start/end JSON lines."""

from __future__ import annotations

import json
from datetime import date

import pytest

from tests.support.airflow_runs import run_dag, task_states

pytestmark = pytest.mark.integration
DAY = date(2025, 12, 2)


def logged(capfd, caplog) -> str:  # noqa: ANN001
    """What the runs logged, wherever Airflow's in-process task logging sent it."""
    return capfd.readouterr().out + "\n" + caplog.text


def json_lines(text: str, event: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        start = line.find('{"')
        if start >= 0 and f'"event": "{event}"' in line:
            out.append(json.loads(line[start:line.rindex("}") + 1]))
    return out


def test_a_failed_money_run_posts_one_alert_with_job_date_task_and_log_link(book, engine, webhook, monkeypatch,
                                                                            capfd, caplog):
    url, received = webhook
    monkeypatch.setenv("ALERT_WEBHOOK_URL", url)
    engine.faults(down=True)
    dag_run = run_dag("daily_performance", DAY)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["pull_ml_performance"] == "failed"
    assert len(received) == 1, received  # one alert: the retry before it was not a failure yet
    message = received[0]
    assert message["text"] == f"daily_performance failed for {DAY}: task pull_ml_performance"
    detail = json.dumps(message["blocks"])
    assert "/dags/daily_performance/runs/" in detail and "/tasks/pull_ml_performance" in detail
    assert "TransientEngineError" in detail
    failed = json_lines(logged(capfd, caplog), "job_failed")
    assert failed and failed[-1]["job_name"] == "daily_performance"
    assert failed[-1]["business_date"] == DAY.isoformat() and failed[-1]["failed_task"] == "pull_ml_performance"
    assert failed[-1]["success"] is False and failed[-1]["trigger"] == "manual"


def test_no_webhook_configured_still_logs_the_failure(book, engine, monkeypatch, capfd, caplog):
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    engine.faults(down=True)
    assert str(run_dag("daily_performance", DAY).state) == "failed"
    assert json_lines(logged(capfd, caplog), "job_failed")


def test_every_run_logs_a_start_and_an_end_line(book, engine, capfd, caplog):
    assert str(run_dag("daily_performance", DAY).state) == "success"
    out = logged(capfd, caplog)
    started, finished = json_lines(out, "job_started"), json_lines(out, "job_finished")
    assert len(started) == 1 and len(finished) == 1
    assert started[0] == {"event": "job_started", "job_name": "daily_performance", "business_date": DAY.isoformat(),
                          "trigger": "manual", "run_id": finished[0]["run_id"]}
    active = len([a for a in book.accounts if a.status == "active"])
    assert finished[0]["success"] is True and finished[0]["errors"] == 0
    assert 0 < finished[0]["processed"] <= active + 3 and finished[0]["duration_ms"] >= 0
