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
from typing import Any

from investment_jobs.money import (
    AMOUNT_SCALE,
    MAX_ABS_AMOUNT,
    MAX_ABS_PERCENT,
    PERCENT_SCALE,
    NotADecimal,
    dumps_exact,
    parse_decimal,
)

RETURN_TOLERANCE = Decimal("0.01")
COUNT_FIELDS = ("trades_executed", "winning_trades", "losing_trades")
# (field, decimals the column keeps, exclusive bound of the absolute value)
DECIMAL_FIELDS = tuple(
    (name, scale, Decimal(1).scaleb(-scale), limit)
    for name, scale, limit in (
        ("opening_balance", AMOUNT_SCALE, MAX_ABS_AMOUNT),
        ("closing_balance", AMOUNT_SCALE, MAX_ABS_AMOUNT),
        ("daily_return", AMOUNT_SCALE, MAX_ABS_AMOUNT),
        ("daily_return_percentage", PERCENT_SCALE, MAX_ABS_PERCENT),
    )
)


@dataclass(frozen=True, slots=True)
class DailyItem:
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


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _account_uuid(text: str) -> str:
    """The canonical (lower-case, hyphenated) form; raises ValueError for what is not a UUID."""
    if _CANONICAL_UUID.fullmatch(text):
        return text
    return str(uuid.UUID(text))


def _count(value: Any) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, bool):
        raise NotADecimal("expected a whole number, got a boolean")
    if isinstance(value, int):
        number = value
    else:
        parsed = parse_decimal(value)
        if parsed != parsed.to_integral_value():
            raise NotADecimal(f"expected a whole number, got {value!r}")
        number = int(parsed)
    if number < 0:
        raise NotADecimal(f"must not be negative, got {number}")
    return number


def validate_item(raw: Any, business_date: date) -> DailyItem | Rejected:
    """Check one engine item for ``business_date``; collect every problem, not just the first."""
    if not isinstance(raw, dict):
        return Rejected("", f"item is not a JSON object: {type(raw).__name__}")
    problems: list[str] = []

    raw_account = raw.get("account_id")
    account_text = "" if raw_account is None else str(raw_account)
    account_id = ""
    if raw_account is None:
        problems.append("missing field 'account_id'")
    else:
        try:
            account_id = _account_uuid(str(raw_account))
        except ValueError:
            problems.append(f"account_id is not a UUID: {account_text[:64]!r}")

    if "date" in raw and raw["date"] is not None and str(raw["date"]) != business_date.isoformat():
        problems.append(f"item date {str(raw['date'])[:32]!r} is not the business date {business_date}")

    values: dict[str, Decimal] = {}
    for name, scale, quantum, limit in DECIMAL_FIELDS:
        field = raw.get(name)
        if field is None:
            problems.append(f"missing field '{name}'")
            continue
        try:
            value = parse_decimal(field)
        except NotADecimal as exc:
            problems.append(f"{name}: {exc}")
            continue
        if abs(value) >= limit:
            problems.append(f"{name}: out of range ({value})")
        elif value.quantize(quantum) != value:
            problems.append(f"{name}: more than {scale} decimal places ({value})")
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
        if not isinstance(agent_data, dict):
            problems.append("ml_agent_data is not a JSON object")
        else:
            try:
                agent_json = dumps_exact(agent_data)
            except ValueError:
                problems.append("ml_agent_data holds a non-finite number (NaN or Infinity)")

    if problems:
        return Rejected(account_id or account_text, "; ".join(problems))
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
