"""Validation of the engine's daily items: every bad kind is rejected with a readable reason."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from investment_jobs.ml_engine.validation import DailyItem, Rejected, validate_item
from investment_jobs.money import loads_exact

DAY = date(2026, 1, 5)
ACCOUNT = "3f2c1a7e-0b5d-4c1e-9a77-2f7e0c6b5d11"


def item(**changes: object) -> dict:
    base = {
        "account_id": ACCOUNT, "date": "2026-01-05",
        "opening_balance": "1000.00", "closing_balance": "1012.34567891", "daily_return": "12.34567891",
        "daily_return_percentage": "1.23456789", "trades_executed": 10, "winning_trades": 6,
        "losing_trades": 3, "ml_agent_data": {"agent_id": "a-1"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_a_good_item_keeps_every_decimal() -> None:
    result = validate_item(item(), DAY)
    assert isinstance(result, DailyItem)
    assert result.closing_balance == Decimal("1012.34567891")
    assert result.daily_return_percentage == Decimal("1.23456789")
    assert result.trades_executed == 10
    assert result.ml_agent_data == '{"agent_id":"a-1"}'


def test_agent_data_keeps_exact_numbers_and_refuses_non_finite_ones() -> None:
    raw = loads_exact(b'{"confidence": 0.12345678901234567890123, "n": 3}')
    result = validate_item(item(ml_agent_data=raw), DAY)
    assert isinstance(result, DailyItem)
    assert result.ml_agent_data == '{"confidence":0.12345678901234567890123,"n":3}'
    bad = validate_item(item(ml_agent_data={"score": Decimal("NaN")}), DAY)
    assert isinstance(bad, Rejected)
    assert "ml_agent_data holds a non-finite number" in bad.reason


def test_json_numbers_work_like_strings() -> None:
    raw = loads_exact(b'{"account_id": "%s", "opening_balance": 1000, "closing_balance": 1000.10,'
                      b' "daily_return": 0.1, "daily_return_percentage": 0.01, "trades_executed": 0,'
                      b' "winning_trades": 0, "losing_trades": 0, "date": "2026-01-05"}' % ACCOUNT.encode())
    result = validate_item(raw, DAY)
    assert isinstance(result, DailyItem)
    assert result.closing_balance - result.opening_balance == Decimal("0.10")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"closing_balance": ...}, "missing field 'closing_balance'"),
    ({"account_id": ...}, "missing field 'account_id'"),
    ({"opening_balance": "12,5O"}, "opening_balance: not a number"),
    ({"daily_return": "NaN"}, "daily_return: not a finite number"),
    ({"daily_return": Decimal("NaN")}, "daily_return: not a finite number"),
    ({"daily_return_percentage": "Infinity"}, "daily_return_percentage: not a finite number"),
    ({"closing_balance": "-5.00", "daily_return": "-1005.00"}, "negative closing balance"),
    ({"daily_return": "12.40"}, "differs from closing - opening"),
    ({"account_id": "ACC-17"}, "account_id is not a UUID"),
    ({"date": "2026-01-04"}, "is not the business date 2026-01-05"),
    ({"opening_balance": "1000.000000001"}, "more than 8 decimal places"),
    ({"opening_balance": "1e13"}, "out of range"),
    ({"daily_return_percentage": "-100"}, "at or below -100"),
    ({"trades_executed": -1}, "trades_executed: must not be negative"),
    ({"winning_trades": 2.5}, "winning_trades"),  # float-ok: a fractional count is refused
    ({"trades_executed": 5}, "winning_trades + losing_trades exceed trades_executed"),
    ({"ml_agent_data": [1, 2]}, "ml_agent_data is not a JSON object"),
    ({"opening_balance": True}, "opening_balance: expected a number, got the boolean"),
    # lenient parsing (defect 13 of issue 12): strict decimal text, and the item's date is D
    ({"opening_balance": "1_000.00"}, "opening_balance: not a number"),
    ({"opening_balance": " 1000.00 "}, "opening_balance: not a number"),
    ({"date": ...}, "missing field 'date'"),
    ({"date": 20260105}, "is not the business date 2026-01-05"),
    # items that parse but could not be stored (defect 5 of issue 12): each is the item's own reject
    ({"opening_balance": Decimal("1e1000000")}, "opening_balance: out of range"),
    ({"opening_balance": "1e1000000"}, "opening_balance: out of range"),
    ({"trades_executed": 2**31}, "trades_executed: out of range"),
    ({"trades_executed": 10**5000}, "trades_executed: out of range"),
    ({"ml_agent_data": {"note": "a\x00b"}}, "ml_agent_data holds a NUL character"),
    ({"ml_agent_data": {"note": "\ud800"}}, "ml_agent_data holds an invalid Unicode string"),
    ({"ml_agent_data": {"\ud800": 1}}, "ml_agent_data holds an invalid Unicode string"),
    ({"ml_agent_data": {"x": Decimal("1e5000")}}, "ml_agent_data holds a number out of range"),
    ({"ml_agent_data": {"x": "y" * 100_000}}, "ml_agent_data is too large"),
    ({"account_id": "\ud800"}, "account_id is not a UUID"),
    ({"account_id": "a" * 3_000_000}, "account_id is not a UUID"),
])
def test_each_bad_kind_is_rejected_with_its_reason(changes: dict, reason: str) -> None:
    result = validate_item(item(**changes), DAY)
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_a_return_within_a_cent_of_closing_minus_opening_passes() -> None:
    assert isinstance(validate_item(item(daily_return="12.35567891"), DAY), DailyItem)
    assert isinstance(validate_item(item(daily_return="12.35567892"), DAY), Rejected)


def test_every_problem_is_reported_and_the_account_is_kept() -> None:
    result = validate_item(item(closing_balance=..., daily_return="x"), DAY)
    assert isinstance(result, Rejected)
    assert result.account_id == ACCOUNT
    assert "missing field 'closing_balance'" in result.reason
    assert "daily_return: not a number" in result.reason


def test_not_an_object() -> None:
    result = validate_item(["a"], DAY)
    assert isinstance(result, Rejected)
    assert result.reason == "item is not a JSON object: list"


@pytest.mark.parametrize("changes", [
    {"opening_balance": "9" * 300_000},
    {"opening_balance": Decimal("9" * 300_000)},
    {"trades_executed": 10**300_000},
    {"account_id": "x" * 3_000_000},
    {"date": "d" * 1_000_000},
])
def test_a_huge_value_gives_a_short_reason_and_a_storable_account_id(changes: dict) -> None:
    """Defect 5 of issue 12: a 300,000-digit number landed whole in the reason (and the summary, the
    XCom and the exception); a 3 MB account id broke the rejects' index."""
    result = validate_item(item(**changes), DAY)
    assert isinstance(result, Rejected)
    assert len(result.reason) <= 1000
    assert len(result.account_id) <= 65


def test_reasons_and_account_ids_of_rejects_hold_only_storable_text() -> None:
    result = validate_item(item(account_id="ab\x00\udc00cd", date="\x00"), DAY)
    assert isinstance(result, Rejected)
    assert "\x00" not in result.account_id + result.reason
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in result.account_id + result.reason)
