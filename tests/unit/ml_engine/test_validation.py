"""Validation of the engine's daily items: every bad kind is rejected with a readable reason."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from investment_jobs.ml_engine.validation import (
    DailyItem,
    EngineItem,
    Rejected,
    as_sent,
    checked_item,
    usual_item,
    validate_item,
)
from investment_jobs.money import dumps_exact, loads_exact

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


# --- the fast path never answers differently from the full checks ------------------------------
AMOUNT_TEXTS = st.one_of(
    st.decimals(min_value=-10**13, max_value=10**13, allow_nan=False, allow_infinity=False, places=8).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"-?[0-9]{1,14}(\.[0-9]{0,12})?", fullmatch=True),
    st.sampled_from(["0", "-0", "100.00", "-100", "-99.9999999999", "1e3", "01.5", "1.", ".5", " 1", "1_000",
                     "١٢", "999999999999.99999999", "1000000000000", "9999999999.9999999999"]),
)
AMOUNTS = st.one_of(AMOUNT_TEXTS, st.integers(-10**13, 10**13), st.decimals(allow_nan=False, places=3),
                    st.none(), st.booleans())
COUNTS = st.one_of(st.integers(-3, 40), st.integers(2**31 - 3, 2**31 + 3), st.decimals(places=1, min_value=0,
                   max_value=50), st.booleans(), st.none(), st.text(max_size=3))
AGENT_DATA = st.one_of(
    st.none(), st.integers(),
    st.dictionaries(st.text(max_size=5), st.one_of(
        st.text(max_size=8), st.integers(), st.booleans(), st.none(), st.decimals(allow_nan=True),
        st.lists(st.integers(), max_size=3)), max_size=4),
    st.just({"n": Decimal("1E+5000")}), st.just({"big": "x" * 70_000}),
)


ODD_VALUES = {
    "account_id": st.one_of(st.just(ACCOUNT.upper()), st.uuids().map(str), st.text(max_size=5), st.none(),
                            st.integers()),
    "date": st.sampled_from(["2026-01-06", "2026-1-5", None, "2026-01-05 "]),
    "opening_balance": AMOUNTS, "closing_balance": AMOUNTS, "daily_return": AMOUNTS,
    "daily_return_percentage": AMOUNTS, "trades_executed": COUNTS, "winning_trades": COUNTS,
    "losing_trades": COUNTS, "ml_agent_data": AGENT_DATA,
}


@st.composite
def engine_items(draw: st.DrawFn) -> dict:
    """The usual item with up to three fields odd (or absent) in the ways an engine gets them wrong."""
    raw = item(ml_agent_data={"agent_id": "a-1", "confidence": Decimal("0.5")})
    for name in draw(st.sets(st.sampled_from(sorted(ODD_VALUES)), max_size=3)):
        raw[name] = draw(st.one_of(ODD_VALUES[name], st.just(...)))
    return {k: v for k, v in raw.items() if v is not ...}


PERCENT_EDGES = ["-100", "-100.0000000000", "-99.9999999999", "9999999999.9999999999", "10000000000", "-0"]
BALANCE_EDGES = ["999999999999.99999999", "1000000000000", "0.00000001", "0.000000001", "-0.00", "00"]


@st.composite
def plausible_items(draw: st.DrawFn) -> dict:
    """Items whose fields all hold, with varied digits: mostly the fast path's, at its edges too."""
    balances = st.one_of(st.sampled_from(BALANCE_EDGES).map(Decimal), st.decimals(
        min_value=0, max_value=Decimal("999999999999.99999999"), places=draw(st.integers(0, 9))))
    opening, closing = draw(balances), draw(balances)
    trades = draw(st.integers(0, 2**31 - 1))
    winning = draw(st.integers(0, trades))
    return item(opening_balance=str(opening), closing_balance=str(closing),
                daily_return=str(closing - opening + draw(st.sampled_from([0, Decimal("0.01"), Decimal("-0.011")]))),
                daily_return_percentage=draw(st.one_of(st.sampled_from(PERCENT_EDGES), st.decimals(
                    min_value=-100, max_value=10**10, places=draw(st.integers(0, 11))).map(str))),
                trades_executed=trades, winning_trades=winning, losing_trades=draw(st.integers(0, trades - winning)),
                ml_agent_data=draw(AGENT_DATA))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(engine_items(), plausible_items()))
def test_the_fast_path_agrees_with_the_full_checks(raw: dict) -> None:
    fast = usual_item(raw, DAY.isoformat())
    full = checked_item(raw, DAY)
    if fast is not None:
        assert isinstance(full, DailyItem)
        assert tuple(fast) == tuple(full)
        assert [type(v) for v in fast] == [type(v) for v in full]
    assert validate_item(raw, DAY) == (fast if fast is not None else full)
    event("fast path" if fast is not None else "full checks")


@settings(max_examples=1500, deadline=None)
@given(st.one_of(engine_items(), plausible_items()))
def test_a_typed_page_gives_each_item_the_answer_of_plain_json(raw: dict) -> None:
    """The client decodes a page into EngineItem structs when every item has contracts.md's JSON
    types, else as plain JSON: either way each item gets the same DailyItem or the same reject."""
    from investment_jobs.ml_engine.client import LISTING_PAGE_DECODER

    try:
        payload = dumps_exact({"items": [raw], "next_cursor": None})
    except ValueError:  # NaN or Infinity: not JSON, so not a page the typed decoder could take
        return
    plain = loads_exact(payload)["items"][0]
    try:
        typed = LISTING_PAGE_DECODER.decode(payload).items[0]
    except msgspec.MsgspecError:
        event("plain JSON page")
        return
    event("typed page")
    assert validate_item(typed, DAY) == validate_item(plain, DAY)
    assert as_sent(typed) == {"ml_agent_data": None, **plain}  # a reject's evidence: the item as sent


def test_the_usual_item_decodes_typed_and_an_odd_one_plain() -> None:
    from investment_jobs.ml_engine.client import LISTING_PAGE_DECODER

    usual = dumps_exact({"items": [item()], "next_cursor": "c2"})
    page = LISTING_PAGE_DECODER.decode(usual)
    assert type(page.items[0]) is EngineItem and page.next_cursor == "c2"
    assert validate_item(page.items[0], DAY) == checked_item(item(), DAY)
    odd = dumps_exact({"items": [item(), item(opening_balance=Decimal("1000.00"))], "next_cursor": None})
    with pytest.raises(msgspec.ValidationError):  # an amount as a JSON number: the page reads as plain JSON
        LISTING_PAGE_DECODER.decode(odd)


def test_the_fast_path_takes_the_usual_item() -> None:
    assert usual_item(item(), DAY.isoformat()) == checked_item(item(), DAY)


@pytest.mark.parametrize("payload", [
    b'{"items": [{"a": 1.50, "b": 12345678901234567890123, "c": 1e5, "d": "\\u0000"}], "next_cursor": null}',
    b'[NaN, Infinity, -Infinity]', b'["\\ud800"]', b'[1' + b'0' * 5000 + b']', b'{"a": 1, "a": 2}',
    b'[-0.0, -0, 1E400, 1e-400, 0.1e5]', '["é", 2.5]', b' [1] ',
])
def test_exact_json_reads_as_the_standard_library_does(payload: bytes | str) -> None:
    import json

    try:
        expected = json.loads(payload, parse_float=Decimal, parse_constant=Decimal)
    except ValueError:
        expected = json.loads(payload, parse_float=Decimal, parse_constant=Decimal, parse_int=Decimal)
    got = loads_exact(payload)
    assert repr(got) == repr(expected)
