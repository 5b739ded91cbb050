"""The /health/jobs rule, without Airflow: on time, late, failed, never ran, deadline missed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from investment_jobs.operations.health import (
    DagFacts,
    RunFacts,
    _newest_covered,
    assess,
    covered_until,
    daily_deadline,
    missing_in,
    monthly_deadline,
    report,
)

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


# --- partitions and deadlines (issue 14) -------------------------------------------------------
def partition_run(key: str, run_after: datetime, state: str = "success", run_type: str = "backfill") -> RunFacts:
    return RunFacts(None, state, run_after, run_after + timedelta(minutes=3), run_type, key, run_after)


def test_a_partitioned_run_covers_its_key_not_the_day_it_ran() -> None:
    """A backfill of 2026-02-10 that ran today completed 2026-02-10, not today."""
    backfilled = partition_run("2026-02-10", NOW - timedelta(hours=1))
    entry = assess(facts("daily_performance", backfilled, backfilled), NOW, GRACE, "UTC")
    assert entry["last_completed"] == "2026-02-10" and entry["status"] == "late"
    assert entry["last_run"]["partition_key"] == "2026-02-10"


def test_the_newest_business_date_wins_over_the_newest_run() -> None:
    old_backfill = partition_run("2026-02-10", NOW - timedelta(minutes=5))
    scheduled = partition_run("2026-03-09", datetime(2026, 3, 10, 0, 30, tzinfo=UTC), run_type="scheduled")
    assert _newest_covered("daily_performance", [old_backfill, scheduled], "UTC") is scheduled
    month = partition_run("2026-02", NOW, run_type="asset_triggered")
    assert covered_until("monthly_distribution", month, "UTC") == ("2026-02", datetime(2026, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize(("now", "stored", "missed"), [
    (datetime(2026, 3, 10, 5, 59, tzinfo=UTC), set(), False),           # not due yet
    (datetime(2026, 3, 10, 6, 1, tzinfo=UTC), set(), True),             # due at 06:00, not stored
    (datetime(2026, 3, 10, 6, 1, tzinfo=UTC), {"2026-03-09"}, False),   # stored in time
])
def test_yesterday_is_due_at_the_daily_deadline(now: datetime, stored: set[str], missed: bool) -> None:
    deadline = daily_deadline(stored, now, "UTC", "06:00")
    assert deadline.subject == "2026-03-09" and deadline.due == datetime(2026, 3, 10, 6, tzinfo=UTC)
    done = partition_run("2026-03-08", datetime(2026, 3, 9, 0, 30, tzinfo=UTC), run_type="scheduled")
    entry = assess(replace(facts("daily_performance", done, done), deadline=deadline), now, GRACE, "UTC")
    assert entry["deadline"]["missed"] is missed
    assert (entry["status"] == "deadline_missed") is missed


def test_the_daily_deadline_is_local_time_across_a_dst_change() -> None:
    """06:00 in New York is 11:00 UTC in winter and 10:00 UTC in summer (2026-03-08 springs forward)."""
    before = daily_deadline(set(), datetime(2026, 3, 7, 12, tzinfo=UTC), "America/New_York", "06:00")
    after = daily_deadline(set(), datetime(2026, 3, 9, 12, tzinfo=UTC), "America/New_York", "06:00")
    assert before.due.astimezone(UTC).hour == 11 and after.due.astimezone(UTC).hour == 10


def test_the_last_complete_month_is_due_a_day_after_the_contract_cron() -> None:
    deadline = monthly_deadline({"2026-01"}, NOW, "UTC", "0 1 1 * *", timedelta(hours=24))
    assert (deadline.subject, deadline.due, deadline.met) == ("2026-02", datetime(2026, 3, 2, 1, tzinfo=UTC), False)
    waiting = DagFacts("monthly_distribution", True, False, "rollup", None, None, None, None,
                       missing_dates=[date(2026, 2, 10)], deadline=deadline)
    entry = assess(waiting, NOW, GRACE, "UTC")  # no run at all: the rollup waits for 2026-02-10
    assert entry["status"] == "deadline_missed" and entry["missing_business_dates"] == ["2026-02-10"]
    distributed = monthly_deadline({"2026-02"}, NOW, "UTC", "0 1 1 * *", timedelta(hours=24))
    month = partition_run("2026-02", datetime(2026, 3, 1, 0, 40, tzinfo=UTC), run_type="asset_triggered")
    ok = DagFacts("monthly_distribution", True, False, "rollup", None, None, month, month, deadline=distributed)
    assert assess(ok, NOW, GRACE, "UTC")["status"] == "ok"


def test_missing_dates_are_the_window_days_without_a_partition() -> None:
    assert missing_in({"2026-02-01", "2026-02-03"}, date(2026, 2, 1), date(2026, 2, 4)) == [
        date(2026, 2, 2), date(2026, 2, 4)]
