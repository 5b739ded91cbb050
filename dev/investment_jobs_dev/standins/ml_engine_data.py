"""Deterministic performance data for the ML engine stand-in.

Every value is a pure function of (seed, account, date), so any date can be served in O(1):
an account's balance level on day d is ``base * (1 + drift*t) * (1 + 0.012*u(d))`` with ``u`` a
hash-based number in [-1, 1]; day d opens at level(d-1) and closes at level(d), so each day opens
at the previous close. Balances are in cents; percentages carry 8 decimals.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
PCT_QUANTUM = Decimal("0.00000001")
_NAMESPACE = uuid.UUID("6f1c1e2a-6b1e-4a8e-9f63-2b0c3f0d9a11")


def demo_account_id(seed: int, index: int) -> str:
    """Account ids the seeder and the stand-in agree on without talking to each other."""
    return str(uuid.uuid5(_NAMESPACE, f"account:{seed}:{index}"))


@dataclass(frozen=True, slots=True)
class EngineAccount:
    account_id: str
    opened_on: date
    closed_on: date | None  # the engine lists the account on days before closed_on
    initial_balance: Decimal
    product_id: str = ""
    trading: bool = True

    def listed_on(self, day: date) -> bool:
        return self.trading and self.opened_on <= day and (self.closed_on is None or self.closed_on > day)


def accounts_in(conn) -> list[EngineAccount]:  # noqa: ANN001 - a psycopg connection
    """The engine's view of the book, from the investment database: every account, suspended ones
    not trading. What the stand-in reads at its start, and what the soak checks against."""
    rows = conn.execute(
        """SELECT id::text, (opened_at AT TIME ZONE 'UTC')::date, (closed_at AT TIME ZONE 'UTC')::date,
                  initial_investment::text, product_id::text, status <> 'suspended'
           FROM investment.accounts""").fetchall()
    return [EngineAccount(r[0], r[1], r[2], Decimal(r[3]), r[4], r[5]) for r in rows]


def _unit(seed: int, account_id: str, day_ordinal: int, salt: str) -> tuple[float, int]:  # float-ok
    digest = hashlib.blake2b(f"{seed}:{account_id}:{day_ordinal}:{salt}".encode(), digest_size=8).digest()
    n = int.from_bytes(digest, "big")
    return (n / 2**64) * 2 - 1, n  # float-ok: stand-in noise only, quantised to cents below


def _level(seed: int, account: EngineAccount, day_ordinal: int) -> Decimal:
    t = day_ordinal - account.opened_on.toordinal()
    if t < 0:
        return account.initial_balance
    u, _ = _unit(seed, account.account_id, day_ordinal, "level")
    drift, _ = _unit(seed, account.account_id, 0, "drift")
    # All arithmetic in Decimal once the noise is drawn; the float only picks a point.
    noise = Decimal(repr(round(u, 6)))
    daily_drift = Decimal("0.0003") + Decimal(repr(round(drift, 6))) * Decimal("0.0002")
    level = account.initial_balance * (1 + daily_drift * t) * (1 + Decimal("0.012") * noise)
    return level.quantize(CENT, rounding=ROUND_HALF_EVEN)


def daily_item(seed: int, account: EngineAccount, day: date) -> dict:
    """The engine's item for one account and day, amounts as decimal strings."""
    ordinal = day.toordinal()
    opening = _level(seed, account, ordinal - 1)
    closing = _level(seed, account, ordinal)
    daily_return = closing - opening
    pct = (daily_return / opening * 100).quantize(PCT_QUANTUM, ROUND_HALF_EVEN) if opening else Decimal(0)
    _, n = _unit(seed, account.account_id, ordinal, "trades")
    trades = n % 23
    winning = (n >> 8) % (trades + 1)
    losing = (n >> 16) % (trades - winning + 1)
    return {
        "account_id": account.account_id,
        "date": day.isoformat(),
        "opening_balance": str(opening),
        "closing_balance": str(closing),
        "daily_return": str(daily_return),
        "daily_return_percentage": str(pct),
        "trades_executed": trades,
        "winning_trades": winning,
        "losing_trades": losing,
        "ml_agent_data": {
            "agent_id": f"agent-{(n >> 24) % 4}",
            "model_version": "v3.2",
            "confidence": str(Decimal((n >> 32) % 10000) / 10000),
            "signals": (n >> 40) % 50,
        },
    }


def agent_items(seed: int, product_ids: list[str], day: date) -> list[dict]:
    """Two agents per product, with deterministic metrics for the day."""
    items = []
    for product_id in sorted(product_ids):
        for k in range(2):
            agent_id = f"agent-{product_id[:8]}-{k}"
            _, n = _unit(seed, agent_id, day.toordinal(), "agent")
            items.append({
                "agent_id": agent_id,
                "product_id": product_id,
                "date": day.isoformat(),
                "total_trades": n % 200,
                "win_rate": str(Decimal((n >> 8) % 10000) / 100),
                "pnl": str(Decimal((n >> 24) % 2_000_000 - 1_000_000) / 100),
                "sharpe_ratio": str(Decimal((n >> 40) % 400 - 100) / 100),
                "max_drawdown": str(Decimal((n >> 48) % 3000) / 100),
            })
    return items
