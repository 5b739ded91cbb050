"""The deadline references and alert, without a scheduler: what each job's deadline is."""

from __future__ import annotations

from datetime import timedelta

import pytest

from investment_jobs.operations.deadlines import (
    AUTOMATIC_RUN_TYPES,
    BusinessDateDeadline,
    PeriodDeadline,
    deadline_alert,
)


@pytest.mark.parametrize("reference", [BusinessDateDeadline("06:30", "Europe/Madrid"),
                                       PeriodDeadline("0 1 1 * *", "America/New_York", 36.0)])
def test_a_reference_survives_the_trip_through_the_serialised_dag(reference) -> None:  # noqa: ANN001
    data = reference.serialize_reference()
    assert data["reference_type"] == type(reference).__name__
    assert type(reference).deserialize_reference(data) == reference


def test_each_dated_money_job_has_its_deadline_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_DEADLINE", "07:15")
    monkeypatch.setenv("MONTHLY_DEADLINE", "30h")
    monkeypatch.setenv("CRON_TIMEZONE", "Asia/Tokyo")
    daily = deadline_alert("daily_performance")
    assert daily.reference == BusinessDateDeadline("07:15", "Asia/Tokyo") and daily.interval == timedelta(0)
    monthly = deadline_alert("monthly_distribution")
    assert monthly.reference == PeriodDeadline("0 1 1 * *", "Asia/Tokyo", 30.0)
    assert deadline_alert("withdrawal_processing") is None and deadline_alert("data_cleanup") is None


def test_operators_own_runs_have_no_deadline() -> None:
    """A backfill or a manual run is late on purpose: only the scheduler's runs are held to time."""
    assert set(AUTOMATIC_RUN_TYPES) == {"scheduled", "asset_triggered"}


@pytest.mark.parametrize("text", ["6:00", "24:00", "06:60", "six"])
def test_a_bad_daily_deadline_is_refused_by_name(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_DEADLINE", text)
    with pytest.raises(ValueError, match="DAILY_DEADLINE|HH:MM"):
        deadline_alert("daily_performance")


@pytest.mark.parametrize(("text", "hours"), [("24", 24), ("36h", 36), (" 12 H ", 12), ("1.5", 1.5)])
def test_the_monthly_deadline_is_hours_after_the_contract_cron(text: str, hours: float,  # float-ok
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from investment_jobs import config

    monkeypatch.setenv("MONTHLY_DEADLINE", text)
    assert config.monthly_deadline() == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["-1", "a day", "24d", "1e3"])
def test_a_bad_monthly_deadline_is_refused_by_name(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from investment_jobs import config

    monkeypatch.setenv("MONTHLY_DEADLINE", text)
    with pytest.raises(ValueError, match="MONTHLY_DEADLINE"):
        config.monthly_deadline()
