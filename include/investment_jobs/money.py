"""Exact money: Decimal parsed from text, never through float; explicit rounding; currencies.

The ML engine sends amounts as JSON numbers or decimal strings; both are parsed from their text,
strictly (JSON's number grammar: no whitespace, underscores, signs other than a leading minus, or
non-ASCII digits). ``CURRENCIES`` is the one table of minor units: ISO 4217's, for what is stored
and rounded (fees), and Stripe's, for what a payout sends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import msgspec
import simplejson

# Scales of the columns that hold engine values (see migrations): amounts are stored exactly as
# sent, so a value with more decimals than the column holds is rejected, never rounded by the DB.
AMOUNT_SCALE = 8
PERCENT_SCALE = 10
# NUMERIC(20, 8): at most 12 integer digits.
MAX_ABS_AMOUNT = Decimal("1e12")
MAX_ABS_PERCENT = Decimal("1e10")

_PERCENT_QUANTUM = Decimal(1).scaleb(-PERCENT_SCALE)
_FAST_DECODER = msgspec.json.Decoder(float_hook=Decimal)
# Built once: simplejson.dumps() with options would build an encoder per call.
_EXACT_ENCODER = simplejson.JSONEncoder(use_decimal=True, ensure_ascii=False, allow_nan=False,
                                        separators=(",", ":"))


QUOTE_LIMIT = 40  # characters of a bad value quoted in a reason: reasons stay small whatever arrives
# JSON's number grammar, ASCII digits only: what a decimal string from the engine must look like.
_DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# The usual amount: no exponent, short enough that no column's range check can overflow Decimal.
_PLAIN_DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_NON_FINITE_NAMES = frozenset({"nan", "-nan", "+nan", "snan", "-snan", "inf", "-inf", "+inf", "infinity",
                               "-infinity", "+infinity"})
MAX_DECIMAL_TEXT = 64  # longer than any amount a column here can hold (NUMERIC(24, 8): 33 characters)
# Beyond this magnitude a value is out of every column's range; refusing it before any arithmetic
# keeps Decimal's context (Emax 999999) from overflowing on values such as 1e1000000.
MAX_ADJUSTED_EXPONENT = 40


class NotADecimal(ValueError):
    """A value that cannot be read as an exact, finite decimal number."""


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A bounded, printable repr of a bad value for a reject reason (a 300,000-digit number stays short)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        text = f"<a number of about {value.bit_length() * 30103 // 100000} digits>"
    else:
        text = value if isinstance(value, str) else str(value) if isinstance(value, int | Decimal) else repr(value)
    shown = repr(text[:limit])
    return shown + (f" (…{len(text) - limit} more characters)" if len(text) > limit else "")


def parse_decimal(value: Any) -> Decimal:
    """Read a JSON number (already a Decimal/int) or a strict decimal string into a finite Decimal."""
    if type(value) is str:  # the common case first: engines send amounts as decimal strings
        if len(value) <= MAX_ADJUSTED_EXPONENT and _PLAIN_DECIMAL_TEXT.fullmatch(value):
            return Decimal(value)
        if len(value) > MAX_DECIMAL_TEXT:
            raise NotADecimal(f"not a number: too long ({len(value)} characters): {quoted(value)}")
        if not _DECIMAL_TEXT.fullmatch(value):
            if value.lower() in _NON_FINITE_NAMES:
                raise NotADecimal(f"not a finite number: {value!r}")
            raise NotADecimal(f"not a number: {quoted(value)}")
        result = Decimal(value)
    elif isinstance(value, bool):
        raise NotADecimal(f"expected a number, got the boolean {value!r}")
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise NotADecimal(f"not a finite number: {value!r}")
        result = value
    elif isinstance(value, int):
        if value.bit_length() > 3 * MAX_ADJUSTED_EXPONENT:
            raise NotADecimal(f"out of range: {quoted(value)}")
        return Decimal(value)
    elif isinstance(value, str):  # a str subclass: held to the same grammar
        return parse_decimal(str(value))
    elif isinstance(value, float):  # float-ok: refuse, a float has already lost exactness
        raise NotADecimal("got a binary float; parse JSON with parse_float=Decimal")
    else:
        raise NotADecimal(f"expected a number, got {type(value).__name__}")
    if abs(result.adjusted()) > MAX_ADJUSTED_EXPONENT or len(result.as_tuple().digits) > MAX_DECIMAL_TEXT:
        raise NotADecimal(f"out of range: {quoted(value)}")
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
    so that validation can reject them with a reason instead of the parser failing the page.

    An integer beyond Python's int-from-text limit (4,300 digits) would fail the whole page; such a
    page is read again with every integer as a Decimal, so only the item that holds it is rejected.
    """
    try:  # msgspec's C decoder first: the same values where it accepts the text, about 2× faster
        return _FAST_DECODER.decode(payload)
    except msgspec.MsgspecError:  # NaN, lone surrogates, huge integers, bad JSON: the stdlib decides
        pass
    try:
        return json.loads(payload, parse_float=Decimal, parse_constant=Decimal)
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            raise
        return json.loads(payload, parse_float=Decimal, parse_constant=Decimal, parse_int=Decimal)


def dumps_exact(value: Any) -> str:
    """JSON text that keeps Decimals exactly as they are (simplejson's C encoder; json.dumps cannot).

    Raises ValueError for a non-finite number, which JSON (and jsonb) cannot hold.
    """
    return _EXACT_ENCODER.encode(value)


EVIDENCE_STRING_LIMIT = 1000  # characters kept of each string in a rejected item's evidence
EVIDENCE_LIMIT = 64 * 1024  # characters of a rejected item's evidence JSON
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def dumps_lenient(value: Any) -> str:
    """JSON that jsonb will keep, as evidence of a rejected item: what JSON or PostgreSQL cannot hold
    (NaN, NUL, lone surrogates, numbers beyond numeric's range, very long strings, deep nesting)
    becomes a bounded string, and the whole is cut to EVIDENCE_LIMIT characters."""
    def text(v: str) -> str:
        cut = _UNSTORABLE.sub("\ufffd", v[:EVIDENCE_STRING_LIMIT])
        return cut + (f"…(+{len(v) - EVIDENCE_STRING_LIMIT} characters)" if len(v) > EVIDENCE_STRING_LIMIT else "")

    def clean(v: Any, depth: int) -> Any:
        if depth > 32:
            return "…(nested deeper)"
        if isinstance(v, dict):
            return {text(str(k)): clean(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x, depth + 1) for x in v]
        if isinstance(v, bool) or v is None:
            return v
        if isinstance(v, str):
            return text(v)
        if isinstance(v, Decimal):
            if not v.is_finite():
                return str(v)
            if abs(v.adjusted()) > 1000 or len(v.as_tuple().digits) > 1000:
                return quoted(v, 80)
            return v
        if isinstance(v, int):
            return v if v.bit_length() <= 3000 else quoted(v)
        return text(repr(v))

    encoded = dumps_exact(clean(value, 0))
    if len(encoded) > EVIDENCE_LIMIT:
        return dumps_exact({"truncated_evidence": encoded[:EVIDENCE_LIMIT], "characters": len(encoded)})
    return encoded


# --- currencies --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Currency:
    """One currency's minor units. ``iso_exponent`` (ISO 4217) is what the ledger keeps and what a
    fee is rounded to; ``stripe_exponent`` is how Stripe's API writes an amount (amount × 10**e as
    an integer); ``stripe_payout_step`` is what a payout amount, in Stripe's integer, must be a
    multiple of."""

    code: str
    iso_exponent: int = 2
    stripe_exponent: int = 2
    stripe_payout_step: int = 1


def _table(*rows: Currency) -> dict[str, Currency]:
    return {row.code: row for row in rows}


# Sources: ISO 4217 (SIX's list of currency codes, column "Minor unit"), and Stripe's
# "Supported currencies" (https://docs.stripe.com/currencies): its zero-decimal list, its
# three-decimal currencies ("the last digit must be 0"), and its special cases: ISK and UGX are
# written with two decimals that must be 00 (5 ISK is 500), HUF and TWD payouts must be evenly
# divisible by 100 (whole units), MGA is zero-decimal at Stripe though ISO gives it two.
# A code not listed is two-decimal in both.
CURRENCIES: dict[str, Currency] = _table(
    *(Currency(code, 0, 0) for code in ("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "pyg", "rwf",
                                        "vnd", "vuv", "xaf", "xof", "xpf")),
    Currency("uyi", 0, 0),
    Currency("isk", 0, 2, 100),
    Currency("ugx", 0, 2, 100),
    Currency("mga", 2, 0),
    Currency("huf", 2, 2, 100),
    Currency("twd", 2, 2, 100),
    *(Currency(code, 3, 3, 10) for code in ("bhd", "jod", "kwd", "omr", "tnd")),
    Currency("iqd", 3, 3), Currency("lyd", 3, 3),
    Currency("clf", 4, 4), Currency("uyw", 4, 4),
)


def currency(code: str) -> Currency:
    """The table's row for an ISO 4217 code (any case); two-decimal when it is not listed."""
    lowered = code.lower()
    if len(lowered) != 3 or not lowered.isascii() or not lowered.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {code!r}")
    return CURRENCIES.get(lowered) or Currency(lowered)


def minor_unit_exponent(code: str) -> int:
    """ISO 4217's minor unit: the decimals the ledger keeps for money the package computes."""
    return currency(code).iso_exponent


def minor_unit(code: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit_exponent(code))


def shown(amount: Decimal, currency: str) -> str:
    """An amount as a person reads it: in the currency's minor unit when that is exact (it is for
    every figure the jobs write), else every digit it has. Never rounded."""
    unit = minor_unit(currency)
    if amount == amount.quantize(unit):
        return f"{amount.quantize(unit):,}"
    return f"{amount.normalize():,f}"
