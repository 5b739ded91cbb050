"""The /health/jobs rule, without Airflow: on time, late, failed, never ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from investment_jobs.operations.health import DagFacts, RunFacts, assess, report

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=2)


def run(logical: datetime, state: str = "success", end: datetime | None = None) -> RunFacts:
    return RunFacts(logical, state, logical, end or logical + timedelta(minutes=1), "scheduled")


def facts(dag_id: str, last: RunFacts | None, success: RunFacts | None, interval: timedelta = timedelta(days=1),
          paused: bool = False) -> DagFacts:
    return DagFacts(dag_id, True, paused, "30 0 * * *", interval, NOW + timedelta(hours=15), last, success)


def test_daily_is_on_time_when_yesterday_is_done() -> None:
    yesterday = run(datetime(2026, 3, 9, 0, 30, tzinfo=UTC))
    entry = assess(facts("daily_performance", yesterday, yesterday), NOW, GRACE, "UTC")
    assert entry["status"] == "ok" and entry["last_completed"] == "2026-03-09"
    assert entry["lag_seconds"] == 9 * 3600  # since the end of 2026-03-09


def test_daily_is_late_when_a_day_is_missing_past_the_grace() -> None:
    two_days_ago = run(datetime(2026, 3, 7, 0, 30, tzinfo=UTC))
    entry = assess(facts("daily_performance", two_days_ago, two_days_ago), NOW, GRACE, "UTC")
    assert entry["status"] == "late" and entry["lag_seconds"] > entry["late_after_seconds"]


def test_a_failed_last_run_is_unhealthy_even_when_recent_days_are_done() -> None:
    done = run(datetime(2026, 3, 9, 0, 30, tzinfo=UTC))
    failed = run(datetime(2026, 3, 9, 0, 30, tzinfo=UTC), state="failed")
    assert assess(facts("daily_performance", failed, done), NOW, GRACE, "UTC")["status"] == "failed"


def test_monthly_counts_from_the_end_of_its_period() -> None:
    february = run(datetime(2026, 2, 1, 1, 0, tzinfo=UTC))
    entry = assess(facts("monthly_distribution", february, february, interval=timedelta(days=28)), NOW, GRACE, "UTC")
    assert entry["last_completed"] == "2026-02" and entry["status"] == "ok"


def test_withdrawals_count_from_the_last_successful_run() -> None:
    half_hourly = timedelta(minutes=30)
    recent = run(NOW - timedelta(minutes=40), end=NOW - timedelta(minutes=39))
    stale = run(NOW - timedelta(hours=5), end=NOW - timedelta(hours=5))
    assert assess(facts("withdrawal_processing", recent, recent, half_hourly), NOW, GRACE, "UTC")["status"] == "ok"
    assert assess(facts("withdrawal_processing", stale, stale, half_hourly), NOW, GRACE, "UTC")["status"] == "late"


def test_503_when_any_money_job_is_not_ok_and_200_otherwise() -> None:
    ok_daily = run(datetime(2026, 3, 9, 0, 30, tzinfo=UTC))
    ok_month = run(datetime(2026, 2, 1, 1, 0, tzinfo=UTC))
    ok_pay = run(NOW - timedelta(minutes=20), end=NOW - timedelta(minutes=19))
    healthy = [facts("daily_performance", ok_daily, ok_daily),
               facts("monthly_distribution", ok_month, ok_month, timedelta(days=28)),
               facts("withdrawal_processing", ok_pay, ok_pay, timedelta(minutes=30)),
               facts("data_cleanup", None, None)]  # not a money job: never ran is fine
    status, body = report(healthy, NOW, GRACE, "UTC")
    assert status == 200 and body["unhealthy_money_jobs"] == []
    assert body["jobs"]["data_cleanup"]["status"] == "never_ran"
    healthy[2] = facts("withdrawal_processing", None, None, timedelta(minutes=30))
    status, body = report(healthy, NOW, GRACE, "UTC")
    assert status == 503 and body["unhealthy_money_jobs"] == ["withdrawal_processing"]


def test_a_paused_job_shows_no_next_run() -> None:
    entry = assess(facts("data_cleanup", None, None, paused=True), NOW, GRACE, "UTC")
    assert entry["paused"] is True and entry["next_run_after"] is None
