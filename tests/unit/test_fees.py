"""Both fee models over sequences of months, rounding per currency, and conservation properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from investment_jobs.fees import HIGH_WATER_MARK, SIMPLE, performance_fee
from investment_jobs.money import minor_unit, minor_unit_exponent

D = Decimal


@pytest.mark.parametrize(("currency", "exponent"), [("usd", 2), ("EUR", 2), ("jpy", 0), ("krw", 0),
                                                    ("kwd", 3), ("bhd", 3), ("jod", 3), ("omr", 3),
                                                    ("tnd", 3)])
def test_minor_unit_exponents(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


def test_bad_currency_code() -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        minor_unit_exponent("us")


@pytest.mark.parametrize(("gross", "currency", "fee"), [
    (D("100.125"), "usd", D("20.02")),   # 20.025 -> half-even -> 20.02
    (D("100.175"), "usd", D("20.04")),   # 20.035 -> 20.04
    (D("1002.5"), "jpy", D("200")),      # 200.5 -> 200 (even)
    (D("1007.5"), "jpy", D("202")),      # 201.5 -> 202 (even)
    (D("10.0025"), "kwd", D("2.000")),   # 2.0005 -> 2.000
    (D("10.0075"), "kwd", D("2.002")),   # 2.0015 -> 2.002
])
def test_simple_fee_rounds_half_even_to_the_minor_unit(gross: Decimal, currency: str, fee: Decimal) -> None:
    result = performance_fee(gross, D(20), currency)
    assert result.status == "distributed"
    assert result.fee == fee
    assert result.fee.as_tuple().exponent == -minor_unit_exponent(currency)
    assert result.fee + result.net == gross


def test_no_profit_pays_nothing() -> None:
    for gross in (D(0), D("-12.34")):
        result = performance_fee(gross, D(20), "usd")
        assert (result.status, result.fee, result.net) == ("no_profit", 0, 0)


def test_simple_model_over_months_charges_every_profitable_month() -> None:
    fees = [performance_fee(g, D(20), "usd").fee for g in (D(100), D(-50), D(50))]
    assert fees == [D("20.00"), D(0), D("10.00")]


TWENTY = D(20)


def run_hwm(months: list[Decimal], rate: Decimal = TWENTY) -> list[tuple[Decimal, Decimal]]:
    cumulative, mark, out = D(0), D(0), []
    for gross in months:
        cumulative += gross
        result = performance_fee(gross, rate, "usd", HIGH_WATER_MARK, cumulative, mark)
        mark = result.high_water_mark_after
        out.append((result.fee, mark))
    return out


def test_high_water_mark_charges_only_new_highs() -> None:
    # +100 (fee on 100), -50 (none), +30 (still 20 below the mark: none), +40 (20 above: fee on 20)
    assert run_hwm([D(100), D(-50), D(30), D(40)]) == [
        (D("20.00"), D(100)), (D(0), D(100)), (D(0), D(100)), (D("4.00"), D(120))]


def test_high_water_mark_after_a_loss_that_is_fully_recovered() -> None:
    assert run_hwm([D(-80), D(50), D(60)]) == [(D(0), D(0)), (D(0), D(0)), (D("6.00"), D(30))]


def test_high_water_mark_never_charges_more_than_the_months_gross() -> None:
    # Profit from before the mark was tracked (C = 500, H = 0) is not charged late.
    result = performance_fee(D(10), D(20), "usd", HIGH_WATER_MARK, cumulative=D(500), high_water_mark=D(0))
    assert result.fee == D("2.00")
    assert result.high_water_mark_after == D(500)


def test_a_fee_cannot_exceed_the_gross() -> None:
    result = performance_fee(D("0.015"), D(100), "usd")
    assert result.fee == D("0.01") and result.net == D("0.005")


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        performance_fee(D(1), D(101), "usd")
    with pytest.raises(ValueError, match="unknown fee model"):
        performance_fee(D(1), D(10), "usd", "tiered")
    with pytest.raises(ValueError, match="needs the cumulative"):
        performance_fee(D(1), D(10), "usd", HIGH_WATER_MARK)


amounts = st.decimals(min_value=D("-1e9"), max_value=D("1e9"), places=8,
                      allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=D(0), max_value=D(100), places=4, allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(["usd", "eur", "jpy", "krw", "kwd", "bhd", "tnd"])


@given(gross=amounts, rate=rates, currency=currencies, model=st.sampled_from([SIMPLE, HIGH_WATER_MARK]),
       cumulative=amounts, mark=st.decimals(min_value=D(0), max_value=D("1e9"), places=8))
def test_fee_conserves_and_is_bounded(gross: Decimal, rate: Decimal, currency: str, model: str,
                                      cumulative: Decimal, mark: Decimal) -> None:
    result = performance_fee(gross, rate, currency, model, cumulative, mark)
    assert result.fee >= 0
    if result.status == "distributed":
        assert result.fee + result.net == gross
        assert result.net >= 0
        # ROUND_HALF_EVEN to the minor unit: at most half a unit above the exact rate x gross.
        assert result.fee <= rate * gross / 100 + minor_unit(currency) / 2
        assert result.fee == result.fee.quantize(minor_unit(currency))
    else:
        assert gross <= 0 and result.fee == 0 and result.net == 0
    if model == HIGH_WATER_MARK:
        assert result.high_water_mark_after == max(mark, cumulative)


@given(st.lists(amounts, max_size=24), rates)
def test_high_water_mark_never_charges_more_than_simple_over_any_sequence(months: list[Decimal],
                                                                         rate: Decimal) -> None:
    hwm_total = sum((fee for fee, _ in run_hwm(months, rate)), D(0))
    simple_total = sum((performance_fee(g, rate, "usd").fee for g in months), D(0))
    assert hwm_total <= simple_total
