"""Exact money: parsing from text, the TWR chain and its rounding, exact JSON."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from investment_jobs.money import (
    NotADecimal,
    chain_twr,
    decimal_places,
    dumps_exact,
    dumps_lenient,
    loads_exact,
    parse_decimal,
    twr_step,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("0.1", Decimal("0.1")),
    ("12.34567891", Decimal("12.34567891")),
    ("-0.5", Decimal("-0.5")),
    (7, Decimal(7)),
    (Decimal("-3.50"), Decimal("-3.50")),
    ("1e2", Decimal("100")),
])
def test_parse_decimal_reads_text_exactly(raw: object, expected: Decimal) -> None:
    assert parse_decimal(raw) == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("NaN", "not a finite number"),
    ("Infinity", "not a finite number"),
    (Decimal("-Infinity"), "not a finite number"),
    ("12,5", "not a number"),
    ("", "not a number"),
    # strict decimal text (defect 13 of issue 12): what Decimal() would forgive, the engine may not send
    (" 12.34567891 ", "not a number"),
    ("1_00.00", "not a number"),
    ("+5", "not a number"),
    (".5", "not a number"),
    ("5.", "not a number"),
    ("0012", "not a number"),
    ("\u0663", "not a number"),  # an Arabic-Indic three: Decimal() reads it as 3
    ("1" * 300_000, "too long"),
    ("1e1000000", "out of range"),
    (Decimal("1e1000000"), "out of range"),
    (10**400, "out of range"),
    (True, "boolean"),
    (0.1, "binary float"),  # float-ok: proves floats are refused
    (None, "expected a number"),
    ([1], "expected a number"),
])
def test_parse_decimal_refuses_what_is_not_an_exact_finite_number(raw: object, message: str) -> None:
    with pytest.raises(NotADecimal, match=message):
        parse_decimal(raw)


def test_json_numbers_are_parsed_from_their_text_not_through_float() -> None:
    body = loads_exact(b'{"a": 0.1, "b": 0.2, "c": 12345678901.12345678, "n": NaN, "i": 3}')
    assert body["a"] + body["b"] == Decimal("0.3")
    assert body["c"] == Decimal("12345678901.12345678")
    assert isinstance(body["i"], int)
    assert not body["n"].is_finite()


def test_dumps_exact_round_trips_decimals() -> None:
    value = {"x": Decimal("0.10000000000000000001"), "l": [1, None, True, "é"], "n": {"y": Decimal("-0")}}
    assert loads_exact(dumps_exact(value)) == value
    assert dumps_exact(value).startswith('{"x":0.10000000000000000001')
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps_exact({"x": Decimal("NaN")})
    lenient = dumps_lenient({"x": Decimal("NaN"), "y": [Decimal("1.5")]})
    assert loads_exact(lenient) == {"x": "NaN", "y": [Decimal("1.5")]}


def test_decimal_places() -> None:
    assert decimal_places(Decimal("1.2300")) == 4
    assert decimal_places(Decimal("100")) == 0
    assert decimal_places(Decimal("1E+2")) == 0


def test_twr_chains_growth_not_sums() -> None:
    # +10% then -10% is a 1% loss, not zero.
    assert chain_twr([Decimal(10), Decimal(-10)]) == Decimal("-1.0000000000")
    assert twr_step(Decimal("1.5"), Decimal("-2.25")) == Decimal("-0.7837500000")
    assert chain_twr([]) == Decimal(0)


def test_twr_step_rounds_half_even_at_ten_decimals() -> None:
    # (100 + p)(100 + r)/100 - 100 with p=0, r chosen so the 11th decimal is an exact 5.
    assert twr_step(Decimal(0), Decimal("0.00000000005")) == Decimal("0E-10")  # ...0|5 -> even 0
    assert twr_step(Decimal(0), Decimal("0.00000000015")) == Decimal("2E-10")  # ...1|5 -> even 2
    assert twr_step(Decimal(0), Decimal("-0.00000000015")) == Decimal("-2E-10")


percent = st.decimals(min_value=Decimal("-99.99999999"), max_value=Decimal("1000"), places=8,
                      allow_nan=False, allow_infinity=False)


@given(st.lists(percent, max_size=40))
def test_chain_matches_the_exact_product_within_its_rounding(days: list[Decimal]) -> None:
    with localcontext() as ctx:
        ctx.prec = 200
        exact = Decimal(1)
        for r in days:
            exact *= 1 + r / 100
        # Each step rounds by at most half a unit of the 10th decimal; that error is then carried
        # through the growth of every later day.
        bound = Decimal(0)
        for k in range(len(days)):
            carried = Decimal(1)
            for r in days[k + 1:]:
                carried *= 1 + r / 100
            bound += Decimal("0.5e-10") * carried
        assert abs(chain_twr(days) - (exact - 1) * 100) <= bound


@given(percent)
def test_one_day_chain_is_the_day_itself(r: Decimal) -> None:
    assert chain_twr([r]) == r
