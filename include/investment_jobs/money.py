"""Exact money: Decimal parsed from text, never through float; explicit rounding.

The ML engine sends amounts as JSON numbers or decimal strings; both are parsed from their text.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

import simplejson

# Scales of the columns that hold engine values (see migrations): amounts are stored exactly as
# sent, so a value with more decimals than the column holds is rejected, never rounded by the DB.
AMOUNT_SCALE = 8
PERCENT_SCALE = 10
# NUMERIC(20, 8): at most 12 integer digits.
MAX_ABS_AMOUNT = Decimal("1e12")
MAX_ABS_PERCENT = Decimal("1e10")

_PERCENT_QUANTUM = Decimal(1).scaleb(-PERCENT_SCALE)
# Built once: simplejson.dumps() with options would build an encoder per call.
_EXACT_ENCODER = simplejson.JSONEncoder(use_decimal=True, ensure_ascii=False, allow_nan=False,
                                        separators=(",", ":"))


class NotADecimal(ValueError):
    """A value that cannot be read as an exact, finite decimal number."""


def parse_decimal(value: Any) -> Decimal:
    """Read a JSON number (already a Decimal/int) or a decimal string into a finite Decimal."""
    kind = type(value)
    if kind is str:  # the common case first: engines send amounts as decimal strings
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise NotADecimal(f"not a number: {value[:40]!r}") from None
        if result.is_finite():
            return result
        raise NotADecimal(f"not a finite number: {value!r}")
    if isinstance(value, bool):
        raise NotADecimal(f"expected a number, got the boolean {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise NotADecimal(f"not a number: {value[:40]!r}") from None
    elif isinstance(value, float):  # float-ok: refuse, a float has already lost exactness
        raise NotADecimal("got a binary float; parse JSON with parse_float=Decimal")
    else:
        raise NotADecimal(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise NotADecimal(f"not a finite number: {value!r}")
    return result


def decimal_places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite values only
    return max(0, -exponent)


def twr_step(previous_percentage: Decimal, daily_percentage: Decimal) -> Decimal:
    """Chain one day into a time-weighted return: ((1+p/100)(1+r/100) - 1) * 100.

    Rounded to PERCENT_SCALE decimals with ROUND_HALF_EVEN at every step. The database's
    ``investment.twr_step`` does the same; the two must agree to the last digit.
    """
    with localcontext() as ctx:
        ctx.prec = 80
        chained = (100 + previous_percentage) * (100 + daily_percentage) / 100 - 100
        return chained.quantize(_PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN)


def chain_twr(daily_percentages: list[Decimal]) -> Decimal:
    result = Decimal(0)
    for pct in daily_percentages:
        result = twr_step(result, pct)
    return result


def loads_exact(payload: bytes | str) -> Any:
    """json.loads with every non-integer number as Decimal; NaN/Infinity survive as Decimal
    so that validation can reject them with a reason instead of the parser failing the page."""
    return json.loads(payload, parse_float=Decimal, parse_constant=Decimal)


def dumps_exact(value: Any) -> str:
    """JSON text that keeps Decimals exactly as they are (simplejson's C encoder; json.dumps cannot).

    Raises ValueError for a non-finite number, which JSON (and jsonb) cannot hold.
    """
    return _EXACT_ENCODER.encode(value)


def dumps_lenient(value: Any) -> str:
    """JSON for keeping a rejected item as evidence: what JSON cannot hold becomes a string."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, Decimal) and not v.is_finite():
            return str(v)
        if v is None or isinstance(v, str | int | Decimal):
            return v
        return repr(v)

    return dumps_exact(clean(value))
