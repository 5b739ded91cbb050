"""Validation of the ML engine's per-account daily items, in exact Decimal.

Each item is either turned into a :class:`DailyItem` or rejected with every reason found, in
words an operator can act on. Checks that need the database (unknown or inactive account,
duplicates) run set-based in SQL afterwards (see jobs/daily.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from investment_jobs.money import (
    AMOUNT_SCALE,
    MAX_ABS_AMOUNT,
    MAX_ABS_PERCENT,
    PERCENT_SCALE,
    NotADecimal,
    dumps_exact,
    parse_decimal,
    quoted,
)

RETURN_TOLERANCE = Decimal("0.01")
COUNT_FIELDS = ("trades_executed", "winning_trades", "losing_trades")
MAX_COUNT = 2**31 - 1  # the trade counts are PostgreSQL integer columns
MAX_REASON = 1000  # characters: a reason is read in the UI, a summary line and an exception
MAX_ACCOUNT_TEXT = 64  # what is kept of an account id that is not a UUID (it lands in an index)
MAX_AGENT_DATA = 64 * 1024  # characters of ml_agent_data JSON; beyond it the engine is sending garbage
# (field, decimals the column keeps, that many decimals as a quantum, exclusive bound of the absolute value)
DECIMAL_FIELDS = tuple((name, scale, Decimal(1).scaleb(-scale), limit) for name, scale, limit in (
    ("opening_balance", AMOUNT_SCALE, MAX_ABS_AMOUNT),
    ("closing_balance", AMOUNT_SCALE, MAX_ABS_AMOUNT),
    ("daily_return", AMOUNT_SCALE, MAX_ABS_AMOUNT),
    ("daily_return_percentage", PERCENT_SCALE, MAX_ABS_PERCENT),
))
# The usual amount text (strict: no exponent, no sign but '-', ASCII digits), read without a call.
_PLAIN_AMOUNT = re.compile(r"-?(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,10})?")


class DailyItem(NamedTuple):
    """A valid item, its fields in the order of the staging table's columns (a row for COPY as it is)."""

    account_id: str
    opening_balance: Decimal
    closing_balance: Decimal
    daily_return: Decimal
    daily_return_percentage: Decimal
    trades_executed: int
    winning_trades: int
    losing_trades: int
    ml_agent_data: str | None  # JSON text, Decimals exact


@dataclass(frozen=True, slots=True)
class Rejected:
    account_id: str  # as the engine sent it (text), '' when absent
    reason: str


CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What PostgreSQL cannot keep in text or jsonb: NUL, and UTF-16 surrogates without their pair.
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
# In JSON text: an exponent too large for jsonb's numeric (Decimals are written 1E+5000).
_BIG_EXPONENT = re.compile("E[+-][0-9]{4,}")
JSONB_MAX_EXPONENT = 1000  # far inside numeric's limits (131072 digits before the point, 16383 after)


def storable_text(text: str, limit: int) -> str:
    """Text that PostgreSQL can keep and an index can hold: NUL and lone surrogates become U+FFFD,
    and it is cut at ``limit`` characters (marked). For evidence: account ids and reasons of rejects."""
    cleaned = _UNSTORABLE_CHAR.sub("\ufffd", text[:limit])
    return cleaned + ("…" if len(text) > limit else "")


def unstorable_json(value: Any, depth: int = 0) -> str | None:
    """Why PostgreSQL's jsonb would refuse ``value`` (None: it would keep it)."""
    if depth > 64:
        return "nested deeper than 64 levels"
    if isinstance(value, str):
        if "\x00" in value:
            return "holds a NUL character (\\u0000), which PostgreSQL cannot store"
        if _UNSTORABLE_CHAR.search(value):
            return "holds an invalid Unicode string (a lone surrogate)"
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "holds a non-finite number (NaN or Infinity)"
        if abs(value.adjusted()) > JSONB_MAX_EXPONENT:
            return f"holds a number out of range ({quoted(value)})"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            why = unstorable_json(key, depth + 1) or unstorable_json(item, depth + 1)
            if why:
                return why
    elif isinstance(value, list):
        for item in value:
            why = unstorable_json(item, depth + 1)
            if why:
                return why
    return None


def agent_data_json(agent_data: Any) -> tuple[str | None, str | None]:
    """(JSON text jsonb will keep, None) or (None, why not) for an item's ml_agent_data."""
    if not isinstance(agent_data, dict):
        return None, "ml_agent_data is not a JSON object"
    try:
        text = dumps_exact(agent_data)
    except ValueError:
        return None, "ml_agent_data holds a non-finite number (NaN or Infinity)"
    if len(text) > MAX_AGENT_DATA:
        return None, f"ml_agent_data is too large ({len(text)} characters, at most {MAX_AGENT_DATA})"
    suspect = ("\\u0000" in text or (not text.isascii() and _UNSTORABLE_CHAR.search(text) is not None)
               or (("E+" in text or "E-" in text) and _BIG_EXPONENT.search(text) is not None))
    if suspect:  # cheap on the usual (ASCII, plain) item; the walk runs only on suspects
        why = unstorable_json(agent_data)
        if why:
            return None, f"ml_agent_data {why}"
    return text, None


def _account_uuid(text: str) -> str:
    """The canonical (lower-case, hyphenated) form; raises ValueError for what is not a UUID."""
    if CANONICAL_UUID.fullmatch(text):
        return text
    return str(uuid.UUID(text))


def _count(value: Any) -> int:
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    if isinstance(value, bool):
        raise NotADecimal("expected a whole number, got a boolean")
    parsed = parse_decimal(value)  # bounded: refuses what no column could hold before int() sees it
    if parsed != parsed.to_integral_value():
        raise NotADecimal(f"expected a whole number, got {quoted(value)}")
    number = int(parsed)
    if number < 0:
        raise NotADecimal(f"must not be negative, got {number}")
    if number > MAX_COUNT:
        raise NotADecimal(f"out of range: {quoted(value)} (at most {MAX_COUNT})")
    return number


_QUANTA = {scale: Decimal(1).scaleb(-scale) for scale in range(0, 17)}


def column_decimal(name: str, raw: Any, scale: int, limit: Decimal | int) -> tuple[Decimal | None, str | None]:
    """(the value, None) when ``raw`` is an exact decimal a NUMERIC column of ``scale`` decimals and
    absolute values below ``limit`` keeps as it is; else (None, why not), naming the field."""
    try:
        value = parse_decimal(raw)
    except NotADecimal as exc:
        return None, f"{name}: {exc}"
    if abs(value) >= limit:
        return None, f"{name}: out of range ({quoted(value)})"
    if value != value.quantize(_QUANTA[scale]):
        return None, f"{name}: more than {scale} decimal places ({quoted(value)})"
    return value, None


def rejected(account: Any, problems: list[str]) -> Rejected:
    """A reject whose account id and reason PostgreSQL can store and a person can read: bounded."""
    account_text = "" if account is None else account if isinstance(account, str) else quoted(account)
    reason = "; ".join(problems)
    return Rejected(storable_text(account_text, MAX_ACCOUNT_TEXT), storable_text(reason, MAX_REASON))


# The usual item in one match, its fields joined by commas: a canonical account UUID, the business
# date, then decimal strings whose digits alone prove their column keeps them as sent (at most 12
# integer digits, so below 1e12, and at most the column's decimals): two balances without a sign,
# the day's return, and the percentage (at most 10 integer digits and 10 decimals). Anything else
# goes through the full checks. One regex call instead of six: the fast path's main cost.
_AMOUNT_TEXT = r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,8})?"
_USUAL_FIELDS = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12},[0-9]{4}-[0-9]{2}-[0-9]{2},"
    rf"{_AMOUNT_TEXT},{_AMOUNT_TEXT},-?{_AMOUNT_TEXT},-?(?:0|[1-9][0-9]{{0,9}})(?:\.[0-9]{{1,10}})?")
_MINUS_HUNDRED = Decimal(-100)
_AGENT_ENCODER = msgspec.json.Encoder(decimal_format="number")


def _usual_agent_json(agent_data: Any) -> str | None:
    """ml_agent_data as compact JSON when it is plainly storable (ASCII, no escape, no non-finite or
    huge-exponent number, within the size limit), else None: the full check decides. Same text as
    :func:`~investment_jobs.money.dumps_exact` (msgspec's encoder, about 15× faster)."""
    if type(agent_data) is not dict:
        return None
    try:
        text = _AGENT_ENCODER.encode(agent_data).decode()
    except (TypeError, ValueError, OverflowError):
        return None
    if (len(text) > MAX_AGENT_DATA or not text.isascii() or "\\" in text or "NaN" in text or "Infinity" in text
            or (("E+" in text or "E-" in text) and _BIG_EXPONENT.search(text) is not None)):
        return None
    return text


class EngineItem(msgspec.Struct, gc=False):
    """An item of the bulk listing whose every field has the JSON type contracts.md gives it: what a
    page decodes into when all its items do (the client's typed decoder), without a dict per item.
    Its values are still unchecked; anything else on a page makes the page decode as plain JSON.
    ``gc=False``: a struct of strings, integers and a JSON object is never part of a cycle."""

    account_id: str
    date: str
    opening_balance: str
    closing_balance: str
    daily_return: str
    daily_return_percentage: str
    trades_executed: int
    winning_trades: int
    losing_trades: int
    ml_agent_data: dict[str, Any] | None = None


class ListingPage(msgspec.Struct, gc=False):
    """A page of the bulk listing, its items typed (see :class:`EngineItem`)."""

    items: list[EngineItem]
    next_cursor: str | None = None


def as_sent(raw: Any) -> Any:
    """The item as a JSON object (what the full checks and a reject's evidence read)."""
    return msgspec.structs.asdict(raw) if type(raw) is EngineItem else raw


def usual_item(raw: Any, day_text: str) -> DailyItem | None:
    """The fast path for an item with nothing unusual about it: the DailyItem that the full checks
    would return, or None when any field is out of the ordinary (then the full checks run and
    decide, with every reason). Never a different answer from them: every condition here implies
    theirs (tests/unit/ml_engine/test_validation.py checks it over generated items)."""
    if type(raw) is not dict:
        return None
    get = raw.get
    account_id, opening, closing = get("account_id"), get("opening_balance"), get("closing_balance")
    daily_return, pct = get("daily_return"), get("daily_return_percentage")
    trades, winning, losing = get("trades_executed"), get("winning_trades"), get("losing_trades")
    if not (get("date") == day_text and type(account_id) is str and type(opening) is str and type(closing) is str
            and type(daily_return) is str and type(pct) is str
            and type(trades) is int and type(winning) is int and type(losing) is int):
        return None
    return _usual_fields(account_id, day_text, opening, closing, daily_return, pct, trades, winning, losing,
                         get("ml_agent_data"))


def _usual_fields(account_id: str, day_text: str, opening: str, closing: str, daily_return: str, pct: str,
                  trades: int, winning: int, losing: int, agent_data: Any) -> DailyItem | None:
    """:func:`usual_item` once the fields are known to have their JSON types (and the date D's)."""
    if not (winning >= 0 and losing >= 0 and winning + losing <= trades <= MAX_COUNT
            and _USUAL_FIELDS.fullmatch(f"{account_id},{day_text},{opening},{closing},{daily_return},{pct}")):
        return None
    opening_value, closing_value, return_value = Decimal(opening), Decimal(closing), Decimal(daily_return)
    pct_value = Decimal(pct)
    if abs(return_value - (closing_value - opening_value)) > RETURN_TOLERANCE or pct_value <= _MINUS_HUNDRED:
        return None
    agent_json = None
    if agent_data is not None:
        agent_json = _usual_agent_json(agent_data)
        if agent_json is None:
            return None
    return DailyItem(account_id, opening_value, closing_value, return_value, pct_value, trades, winning, losing,
                     agent_json)


def validate_item(raw: Any, business_date: date) -> DailyItem | Rejected:
    """Check one engine item for ``business_date``; collect every problem, not just the first.

    The usual item takes :func:`usual_item`'s fast path; anything else gets the full checks."""
    day_text = business_date.isoformat()
    if type(raw) is EngineItem:  # typed: only the values are left to check
        usual = None if raw.date != day_text else _usual_fields(
            raw.account_id, day_text, raw.opening_balance, raw.closing_balance, raw.daily_return,
            raw.daily_return_percentage, raw.trades_executed, raw.winning_trades, raw.losing_trades,
            raw.ml_agent_data)
        return usual if usual is not None else checked_item(as_sent(raw), business_date)
    usual = usual_item(raw, day_text)
    return usual if usual is not None else checked_item(raw, business_date)


def checked_item(raw: Any, business_date: date) -> DailyItem | Rejected:
    """The full checks of one item, each problem with its reason."""
    if not isinstance(raw, dict):
        return Rejected("", f"item is not a JSON object: {type(raw).__name__}")
    problems: list[str] = []

    raw_account = raw.get("account_id")
    account_id = ""
    if raw_account is None:
        problems.append("missing field 'account_id'")
    elif not isinstance(raw_account, str):
        problems.append(f"account_id is not a string: {quoted(raw_account)}")
    else:
        try:
            account_id = _account_uuid(raw_account)
        except ValueError:
            problems.append(f"account_id is not a UUID: {quoted(raw_account)}")

    raw_date = raw.get("date")
    if raw_date is None:
        problems.append("missing field 'date'")
    elif raw_date != business_date.isoformat():
        problems.append(f"item date {quoted(raw_date)} is not the business date {business_date}")

    values: dict[str, Decimal] = {}
    for name, scale, quantum, limit in DECIMAL_FIELDS:
        field = raw.get(name)
        if field is None:
            problems.append(f"missing field '{name}'")
            continue
        if type(field) is str and _PLAIN_AMOUNT.fullmatch(field):  # the hot path: 4 fields x every item
            value = Decimal(field)
        else:
            try:
                value = parse_decimal(field)
            except NotADecimal as exc:
                problems.append(f"{name}: {exc}")
                continue
        if abs(value) >= limit:
            problems.append(f"{name}: out of range ({quoted(value)})")
        elif value.quantize(quantum) != value:
            problems.append(f"{name}: more than {scale} decimal places ({quoted(value)})")
        else:
            values[name] = value

    counts: dict[str, int] = {}
    for name in COUNT_FIELDS:
        if name not in raw or raw[name] is None:
            problems.append(f"missing field '{name}'")
            continue
        try:
            counts[name] = _count(raw[name])
        except NotADecimal as exc:
            problems.append(f"{name}: {exc}")

    opening = values.get("opening_balance")
    closing = values.get("closing_balance")
    daily_return = values.get("daily_return")
    if opening is not None and opening < 0:
        problems.append(f"negative opening balance ({opening})")
    if closing is not None and closing < 0:
        problems.append(f"negative closing balance ({closing})")
    if opening is not None and closing is not None and daily_return is not None:
        expected = closing - opening
        if abs(daily_return - expected) > RETURN_TOLERANCE:
            problems.append(
                f"daily_return {daily_return} differs from closing - opening {expected} "
                f"by more than {RETURN_TOLERANCE}"
            )
    pct = values.get("daily_return_percentage")
    if pct is not None and pct <= -100:
        problems.append(f"daily_return_percentage {pct} is at or below -100")
    if len(counts) == len(COUNT_FIELDS) and (
        counts["winning_trades"] + counts["losing_trades"] > counts["trades_executed"]
    ):
        problems.append("winning_trades + losing_trades exceed trades_executed")

    agent_data = raw.get("ml_agent_data")
    agent_json = None
    if agent_data is not None:
        agent_json, why = agent_data_json(agent_data)
        if why:
            problems.append(why)

    if problems:
        return rejected(account_id or raw_account, problems)
    return DailyItem(
        account_id=account_id,
        opening_balance=values["opening_balance"],
        closing_balance=values["closing_balance"],
        daily_return=values["daily_return"],
        daily_return_percentage=values["daily_return_percentage"],
        trades_executed=counts["trades_executed"],
        winning_trades=counts["winning_trades"],
        losing_trades=counts["losing_trades"],
        ml_agent_data=agent_json,
    )
