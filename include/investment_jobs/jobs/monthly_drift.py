"""A distributed month whose stored days changed afterwards (drift): the correction a person decides.

For each drifted account the page shows what was distributed (its effective figures: the latest
correction's, else the distribution's) and what the stored days give now, with the fee recomputed
at the rate and fee model the month was distributed with, and the difference in net profit. The
operator chooses for the month:

- **post correcting adjustments**: per account, one ``adjustment`` transaction of ``|Δ net|``
  (like ``profit_distribution`` it records money credited and does not move the balance; the
  sign is kept in ``distribution_corrections.net_delta``), ``accounts.total_profit_distributed``
  moves by ``Δ net``, and a ``distribution_corrections`` row makes the recomputed figures the
  month's effective ones;
- **acknowledge and leave it**: a ``distribution_corrections`` row of kind ``acknowledged`` with
  the stored days' figures and the fee and net as paid; no money moves.

Either way the drift check is clean again until the days change once more. A high-water mark is
never moved by a correction (a later month may already have been charged from it). Each account is
corrected only if its effective figures are still the ones shown; all in one transaction, with the
decision, under the distribution lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.fees import performance_fee
from investment_jobs.jobs import monthly
from investment_jobs.views.summaries import refresh_period

if TYPE_CHECKING:
    import psycopg

    from investment_jobs.db.staging import RunReference
    from investment_jobs.jobs.decisions import Decision

POST = "Post correcting adjustments"
ACKNOWLEDGE = "Acknowledge and leave as it is"
LATER = "Decide later"

DRIFTED = """
    SELECT a.account_id::text, a.distribution_id::text, a.user_id::text, a.currency,
           a.distributed_gross, a.distributed_opening, a.distributed_closing, a.distributed_fee, a.distributed_net,
           a.gross_profit, a.opening_balance, a.closing_balance, a.cumulative_return,
           a.distributed_rate, a.distributed_fee_model, a.distributed_mark_before
    FROM {assessed} a WHERE a.outcome = 'drift' AND a.gross_profit IS NOT NULL
    ORDER BY 1
"""
EFFECTIVE = """
    SELECT coalesce(c.gross_profit, d.gross_profit), coalesce(c.opening_balance, d.opening_balance),
           coalesce(c.closing_balance, d.closing_balance), coalesce(c.net_profit, d.net_profit)
    FROM investment.distributions d
    LEFT JOIN LATERAL (SELECT * FROM investment.distribution_corrections dc WHERE dc.distribution_id = d.id
                       ORDER BY dc.id DESC LIMIT 1) c ON true
    WHERE d.id = %s
    FOR UPDATE OF d
"""


@dataclass(frozen=True)
class Proposal:
    account_id: str
    distribution_id: str
    user_id: str
    currency: str
    was: tuple[Decimal, Decimal, Decimal, Decimal, Decimal]  # gross, opening, closing, fee, net (effective)
    now: tuple[Decimal, Decimal, Decimal, Decimal, Decimal]  # gross, opening, closing, fee, net (recomputed)

    @property
    def net_delta(self) -> Decimal:
        return self.now[4] - self.was[4]

    def facts(self) -> dict[str, Any]:
        names = ("gross_profit", "opening_balance", "closing_balance", "performance_fee_amount", "net_profit")
        return {"account_id": self.account_id, "distribution_id": self.distribution_id, "user_id": self.user_id,
                "currency": self.currency, "was": dict(zip(names, map(str, self.was), strict=True)),
                "now": dict(zip(names, map(str, self.now), strict=True)), "net_delta": str(self.net_delta)}

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> Proposal:
        names = ("gross_profit", "opening_balance", "closing_balance", "performance_fee_amount", "net_profit")
        return cls(facts["account_id"], facts["distribution_id"], facts["user_id"], facts["currency"],
                   tuple(Decimal(facts["was"][n]) for n in names),  # type: ignore[arg-type]
                   tuple(Decimal(facts["now"][n]) for n in names))  # type: ignore[arg-type]


def proposals(conn: psycopg.Connection, run: RunReference) -> list[Proposal]:
    """The drifted accounts of the run's period, each with its recomputed figures (read only)."""
    rows = monthly.staging(run).execute(conn, DRIFTED).fetchall()
    conn.rollback()
    out = []
    for (account, distribution, user, currency, d_gross, d_open, d_close, d_fee, d_net, gross, opening, closing,
         cumulative, rate, model, mark_before) in rows:
        fee = performance_fee(gross, rate, currency, model, cumulative, mark_before)
        out.append(Proposal(account, distribution, user, currency, (d_gross, d_open, d_close, d_fee, d_net),
                            (gross, opening, closing, fee.fee, fee.net)))
    return out


def render(items: list[Proposal], period: str) -> str:
    from investment_jobs.money import shown

    lines = [f"**{len(items)}** account(s) of **{period}** were distributed, and their stored days now add up "
             "differently (a day was rerun after the distribution). Nothing was paid again. Choose for the month:",
             "", f"- *{POST}*: one `adjustment` per account for the difference in net profit below (the month's "
             "rate and fee model; the high-water mark is not moved);",
             f"- *{ACKNOWLEDGE}*: record the new stored figures as seen, move no money;",
             f"- *{LATER}*: nothing now; the month's next run asks again.", "",
             "| account | currency | gross was → now | fee was → now | net was → now | Δ net |",
             "|---|---|---:|---:|---:|---:|"]
    for p in items:
        c = p.currency
        lines.append(f"| `{p.account_id}` | {c} | {shown(p.was[0], c)} → {shown(p.now[0], c)} | "
                     f"{shown(p.was[3], c)} → {shown(p.now[3], c)} | {shown(p.was[4], c)} → {shown(p.now[4], c)} | "
                     f"**{shown(p.net_delta, c)}** |")
    totals: dict[str, Decimal] = {}
    for p in items:
        totals[p.currency] = totals.get(p.currency, Decimal(0)) + p.net_delta
    lines += ["", "Δ net by currency: " + ", ".join(f"{c} {shown(v, c)}" for c, v in sorted(totals.items()))]
    return "\n".join(lines)


ADJUSTMENT = """
    INSERT INTO investment.transactions (account_id, user_id, type, amount, balance_before, balance_after,
        distribution_id, distribution_period, status, processed_at)
    SELECT %s, %s, 'adjustment', %s, a.current_balance, a.current_balance, %s, %s, 'completed', now()
    FROM investment.accounts a WHERE a.id = %s
    RETURNING id
"""
CORRECTION = """
    INSERT INTO investment.distribution_corrections (distribution_id, account_id, period, kind, gross_profit,
        opening_balance, closing_balance, performance_fee_amount, net_profit, net_delta, transaction_id, decision_id)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (distribution_id, decision_id) DO NOTHING
    RETURNING id
"""


def apply(conn: psycopg.Connection, period: str, items: list[Proposal], choice: str,
          decision: Decision) -> dict[str, Any]:
    """Carry out the choice for every account whose effective figures are still the ones shown,
    and record the decision, in one transaction."""
    from investment_jobs.jobs.decisions import record

    corrected: list[str] = []
    changed_meanwhile: list[str] = []
    moved: dict[str, Decimal] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (monthly.LOCK_KEY,))
        decision_id = record(conn, decision)
        for p in items:
            effective = conn.execute(EFFECTIVE, (p.distribution_id,)).fetchone()
            if effective is None or tuple(effective) != (p.was[0], p.was[1], p.was[2], p.was[4]):
                changed_meanwhile.append(p.account_id)
                continue
            transaction_id = None
            if choice == POST:
                figures, delta = p.now, p.net_delta
                if delta != 0:
                    (transaction_id,) = conn.execute(ADJUSTMENT, (p.account_id, p.user_id, abs(delta),
                                                                  p.distribution_id, period, p.account_id)).fetchone()
                    conn.execute("""UPDATE investment.accounts SET total_profit_distributed =
                                        total_profit_distributed + %s, updated_at = now() WHERE id = %s""",
                                 (delta, p.account_id))
            else:
                figures, delta = (*p.now[:3], p.was[3], p.was[4]), Decimal(0)
            row = conn.execute(CORRECTION, (p.distribution_id, p.account_id, period,
                                            "adjustment" if choice == POST else "acknowledged", *figures, delta,
                                            transaction_id, decision_id)).fetchone()
            if row is not None:
                corrected.append(p.account_id)
                moved[p.currency] = moved.get(p.currency, Decimal(0)) + delta
        if corrected:
            refresh_period(conn, period)
    return {"decision_id": decision_id, "corrected": corrected, "changed_meanwhile": changed_meanwhile,
            "net_delta_by_currency": {c: str(v) for c, v in sorted(moved.items())}}
