"""make job's argument errors: one line and exit status 2, before anything starts."""

from __future__ import annotations

import pytest

from investment_jobs_dev.cli import main


def test_unknown_dag_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["job", "--dag", "no_such_dag", "--date", "2026-01-05"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown DAG id 'no_such_dag'; one of: ")
    assert "daily_performance" in err and "\n" not in err


def test_malformed_date_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["job", "--dag", "daily_performance", "--date", "2026-13-05"]) == 2
    assert capsys.readouterr().err.strip() == "error: DATE must be a date in YYYY-MM-DD form, got '2026-13-05'"


def test_the_demo_shows_the_last_complete_month() -> None:
    from datetime import date

    from investment_jobs.business_dates import last_complete_month

    november = last_complete_month(date(2026, 11, 25))
    assert (november.first_day, november.last_day) == (date(2026, 10, 1), date(2026, 10, 31))
    january = last_complete_month(date(2026, 1, 1))
    assert (january.first_day, january.last_day) == (date(2025, 12, 1), date(2025, 12, 31))
