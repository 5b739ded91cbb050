"""The settings of operator decisions (issue 15), read without Airflow: what an operator may write."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from investment_jobs import config


@pytest.mark.parametrize(("raw", "mode"), [(None, "required"), ("required", "required"), ("auto", "auto"),
                                           ("cli:ana", "cli:ana")])
def test_distribution_approval_modes(raw: str | None, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if raw is None:
        monkeypatch.delenv("DISTRIBUTION_APPROVAL", raising=False)
    else:
        monkeypatch.setenv("DISTRIBUTION_APPROVAL", raw)
    assert config.distribution_approval() == mode


@pytest.mark.parametrize("raw", ["yes", "cli:", "Auto ", "off"])
def test_an_unknown_approval_mode_is_refused(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTRIBUTION_APPROVAL", raw)
    with pytest.raises(ValueError, match="DISTRIBUTION_APPROVAL must be"):
        config.distribution_approval()


@pytest.mark.parametrize(("raw", "expected"), [(None, timedelta(hours=48)), ("90s", timedelta(seconds=90)),
                                               ("20m", timedelta(minutes=20)), ("36", timedelta(hours=36)),
                                               ("2d", timedelta(days=2))])
def test_approval_timeout(raw: str | None, expected: timedelta, monkeypatch: pytest.MonkeyPatch) -> None:
    if raw is None:
        monkeypatch.delenv("DISTRIBUTION_APPROVAL_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("DISTRIBUTION_APPROVAL_TIMEOUT", raw)
    assert config.distribution_approval_timeout() == expected


@pytest.mark.parametrize("raw", ["soon", "1.5h", "-2h", "2 weeks"])
def test_a_timeout_that_is_not_a_duration_is_refused(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTRIBUTION_APPROVAL_TIMEOUT", raw)
    with pytest.raises(ValueError, match="duration"):
        config.distribution_approval_timeout()


@pytest.mark.parametrize(("raw", "usd", "jpy"), [
    ("", None, None),
    ("5000", Decimal("5000"), Decimal("5000")),
    ("usd=5000.50, JPY=700000", Decimal("5000.50"), Decimal("700000")),
    ("usd=5000,100", Decimal("5000"), Decimal("100")),
])
def test_amounts_per_currency(raw: str, usd: Decimal | None, jpy: Decimal | None,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTRIBUTION_REVIEW_FEE_ALERT", raw)
    alert = config.distribution_review_fee_alert()
    assert (alert.get("usd"), alert.get("jpy")) == (usd, jpy)
    assert alert.configured is (usd is not None)


@pytest.mark.parametrize("raw", ["usd=lots", "dollars=5", "usd=-1", "usd="])
def test_an_amount_that_is_not_one_is_refused(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WITHDRAWAL_REVIEW_THRESHOLD", raw)
    with pytest.raises(ValueError, match="WITHDRAWAL_REVIEW_THRESHOLD"):
        config.withdrawal_review_threshold()


def test_money_approvers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONEY_APPROVERS", " ana, ben ,,")
    assert config.money_approvers() == {"ana", "ben"}
    monkeypatch.delenv("MONEY_APPROVERS")
    assert config.money_approvers() == frozenset()
