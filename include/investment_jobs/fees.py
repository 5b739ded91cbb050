"""Performance fees, in exact Decimal: the one implementation monthly_distribution uses.

Two models, chosen per product (``products.fee_model``):

- ``simple`` (the original's rule): fee = rate × gross when gross > 0, else 0.
- ``high_water_mark``: a fee only on profit above the best level a fee was already charged up
  to. With C the account's cumulative return since it opened (Σ daily_return up to the end of the
  month) and H its mark (starting at 0): fee = rate × max(0, min(gross, C − H)), then
  H = max(H, C). Losses must be earned back before a fee is charged again. The fee base never
  exceeds the month's own gross, so profit made before the mark was tracked is not charged late.

The fee is rounded to the currency's minor unit with ROUND_HALF_EVEN (so it can exceed
rate × gross by at most half a minor unit) and never exceeds the gross profit rounded down to the
minor unit, so net = gross − fee is never negative. fee + net == gross exactly. A month with no
profit (gross ≤ 0) pays nothing: status ``no_profit``, fee 0, net 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from investment_jobs.money import minor_unit

SIMPLE = "simple"
HIGH_WATER_MARK = "high_water_mark"
FEE_MODELS = (SIMPLE, HIGH_WATER_MARK)


@dataclass(frozen=True, slots=True)
class Fee:
    status: str  # 'distributed' | 'no_profit'
    fee: Decimal
    net: Decimal
    high_water_mark_after: Decimal | None  # None for the simple model


def performance_fee(gross: Decimal, rate_percent: Decimal, currency: str, model: str = SIMPLE,
                    cumulative: Decimal | None = None, high_water_mark: Decimal | None = None) -> Fee:
    """The fee and net profit of one account's month."""
    if not Decimal(0) <= rate_percent <= Decimal(100):
        raise ValueError(f"fee rate must be between 0 and 100 percent, got {rate_percent}")
    if model == SIMPLE:
        base, mark_after = gross, None
    elif model == HIGH_WATER_MARK:
        if cumulative is None or high_water_mark is None:
            raise ValueError("the high-water-mark model needs the cumulative return and the mark")
        base = min(gross, cumulative - high_water_mark)
        mark_after = max(high_water_mark, cumulative)
    else:
        raise ValueError(f"unknown fee model {model!r}; one of {FEE_MODELS}")
    if gross <= 0:
        return Fee("no_profit", Decimal(0), Decimal(0), mark_after)
    unit = minor_unit(currency)
    fee = (max(base, Decimal(0)) * rate_percent / 100).quantize(unit, rounding=ROUND_HALF_EVEN)
    fee = min(fee, gross.quantize(unit, rounding=ROUND_FLOOR))
    return Fee("distributed", fee, gross - fee, mark_after)
