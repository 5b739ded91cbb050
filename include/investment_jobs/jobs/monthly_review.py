"""What a reviewer sees before a month is credited: the figures of the approval page.

Read from the run's staging tables after ``compute_fees`` (nothing is written): per currency and
product the accounts, gross, fees and net about to be distributed; the ten largest fees of each
currency; the change of each currency's gross against the previous distributed month; the
held-back accounts and their missing dates; and the anomalies (a fee above
``DISTRIBUTION_REVIEW_FEE_ALERT``, a gross change beyond ``DISTRIBUTION_REVIEW_CHANGE_ALERT``
percent). ``fingerprint`` pins the exact rows approved: ``distribute`` refuses to write if the
computed rows are no longer the ones the reviewer saw.

Money stays ``Decimal`` until it is rendered as text; the figures are stored with the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.config import CurrencyAmounts
from investment_jobs.jobs import monthly
from investment_jobs.money import shown

if TYPE_CHECKING:
    import psycopg

    from investment_jobs.db.staging import RunReference

TOP_FEES = 10
HELD_LISTED = 25

BY_PRODUCT = """
    SELECT s.currency, p.name, s.product_id::text, count(*),
           coalesce(sum(s.gross_profit) FILTER (WHERE r.status = 'distributed'), 0), sum(r.fee), sum(r.net),
           count(*) FILTER (WHERE r.status = 'distributed'),
           coalesce(sum(s.gross_profit) FILTER (WHERE r.status <> 'distributed'), 0)
    FROM {ready} r JOIN {assessed} s USING (account_id) JOIN investment.products p ON p.id = s.product_id
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
LARGEST_FEES = """
    SELECT currency, account_id::text, name, gross_profit, fee FROM (
        SELECT s.currency, s.account_id, p.name, s.gross_profit, r.fee,
               row_number() OVER (PARTITION BY s.currency ORDER BY r.fee DESC, s.account_id) AS rank
        FROM {ready} r JOIN {assessed} s USING (account_id) JOIN investment.products p ON p.id = s.product_id
        WHERE r.fee > 0) ranked
    WHERE rank <= %(top)s ORDER BY currency, fee DESC, account_id
"""
# The latest month before P with distributions, per currency: what P is compared with.
PREVIOUS = """
    SELECT DISTINCT ON (p.currency) p.currency, d.period, sum(d.gross_profit) OVER w, count(*) OVER w
    FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
    WHERE d.period < %(period)s
    WINDOW w AS (PARTITION BY p.currency, d.period)
    ORDER BY p.currency, d.period DESC
"""
FINGERPRINT = """
    SELECT count(*), coalesce(md5(string_agg(
        concat_ws('|', account_id, status, fee, net, coalesce(high_water_mark_after::text, '-')),
        ',' ORDER BY account_id)), '-')
    FROM {ready}
"""


@dataclass(frozen=True)
class Review:
    """The approval page's figures (``Decimal`` money, ISO dates), and what pins them."""

    period: str
    accounts: int
    fingerprint: str
    by_product: list[dict[str, Any]]
    largest_fees: dict[str, list[dict[str, Any]]]
    changes: dict[str, dict[str, Any]]
    held_back: list[dict[str, Any]]
    held_back_count: int
    drift_count: int
    anomalies: list[str]

    def totals(self) -> dict[str, dict[str, Decimal]]:
        out: dict[str, dict[str, Decimal]] = {}
        for row in self.by_product:
            entry = out.setdefault(row["currency"], {"accounts": Decimal(0), "profitable": Decimal(0),
                                                     "gross_profit": Decimal(0), "performance_fees": Decimal(0),
                                                     "net_profit": Decimal(0), "losses": Decimal(0)})
            for name in ("accounts", "profitable", "gross_profit", "performance_fees", "net_profit", "losses"):
                entry[name] += row[name]
        return out

    def figures(self) -> dict[str, Any]:
        """What the decision records (money as exact text)."""
        def text(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, dict):
                return {k: text(v) for k, v in value.items()}
            if isinstance(value, list):
                return [text(v) for v in value]
            return value

        return text({"period": self.period, "accounts": self.accounts, "fingerprint": self.fingerprint,
                     "totals_by_currency": self.totals(), "by_product": self.by_product,
                     "largest_fees": self.largest_fees, "change_vs_previous": self.changes,
                     "held_back_count": self.held_back_count, "held_back": self.held_back,
                     "drift_count": self.drift_count, "anomalies": self.anomalies})


def fingerprint(conn: psycopg.Connection, run: RunReference) -> tuple[int, str]:
    """(rows, md5) of the computed rows: the exact set a reviewer approves."""
    count, digest = monthly.staging(run).execute(conn, FINGERPRINT).fetchone()
    return int(count), str(digest)


def review(conn: psycopg.Connection, run: RunReference, fee_alert: CurrencyAmounts,
           change_alert: Decimal) -> Review:
    """The figures of P's approval page, from the run's staging tables (read only)."""
    tables = monthly.staging(run)
    params = {"period": run.key, "top": TOP_FEES}
    products = tables.execute(conn, BY_PRODUCT).fetchall()
    fees = tables.execute(conn, LARGEST_FEES, params).fetchall()
    held = tables.execute(conn, monthly.HELD_BACK).fetchall()
    drift = tables.execute(conn, "SELECT count(*) FROM {assessed} WHERE outcome = 'drift'").fetchone()[0]
    previous = {cur: (period, gross, n) for cur, period, gross, n in conn.execute(PREVIOUS, params).fetchall()}
    accounts, digest = fingerprint(conn, run)
    conn.rollback()

    # gross_profit: of the profitable accounts (fee + net == gross); losses: the others' (no fee, net 0)
    by_product = [{"currency": cur, "product": name, "product_id": pid, "accounts": int(n),
                   "gross_profit": gross, "performance_fees": fee, "net_profit": net, "profitable": int(paid),
                   "losses": losses}
                  for cur, name, pid, n, gross, fee, net, paid, losses in products]
    largest: dict[str, list[dict[str, Any]]] = {}
    for cur, account, name, gross, fee in fees:
        largest.setdefault(cur, []).append({"account_id": account, "product": name, "gross_profit": gross,
                                            "performance_fee": fee})
    anomalies: list[str] = []
    for cur, rows in largest.items():
        limit = fee_alert.get(cur)
        above = [r for r in rows if limit is not None and r["performance_fee"] > limit]
        for row in above:
            anomalies.append(f"fee {shown(row['performance_fee'], cur)} {cur} on account {row['account_id']} is above "
                             f"DISTRIBUTION_REVIEW_FEE_ALERT ({limit} {cur})")
    totals: dict[str, Decimal] = {}  # the month's gross result: profits and losses
    for row in by_product:
        totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["gross_profit"] + row["losses"]
    changes: dict[str, dict[str, Any]] = {}
    for cur, gross in totals.items():
        if cur not in previous:
            changes[cur] = {"previous_period": None}
            continue
        period, before, n = previous[cur]
        change = None if before == 0 else ((gross - before) / abs(before) * 100).quantize(Decimal("0.1"))
        changes[cur] = {"previous_period": period, "previous_gross_profit": before, "previous_accounts": int(n),
                        "gross_profit": gross, "change_percent": change}
        if change is not None and abs(change) > change_alert:
            anomalies.append(f"{cur} gross {shown(gross, cur)} changed {change:+}% against {period} "
                             f"({shown(before, cur)}), beyond "
                             f"DISTRIBUTION_REVIEW_CHANGE_ALERT ({change_alert}%)")
    held_back = [{"account_id": a, "reason": o, "missing_dates": [d.isoformat() for d in days],
                  **({"why": why} if why else {})} for a, o, days, why in held[:HELD_LISTED]]
    return Review(period=run.key, accounts=accounts, fingerprint=digest, by_product=by_product,
                  largest_fees=largest, changes=changes, held_back=held_back, held_back_count=len(held),
                  drift_count=int(drift), anomalies=anomalies)


# --- the page --------------------------------------------------------------------------------
def render(review: Review) -> str:
    """The approval page's body (Markdown, as the UI's Required Actions shows it)."""
    from investment_jobs.operations.alerts import date_ranges

    lines = [f"**{review.accounts}** account(s) of **{review.period}** are computed and wait for this approval. "
             "Approve to credit them exactly as below; Reject (say why) to write nothing.", ""]
    if review.anomalies:
        lines += ["#### ⚠ Anomalies", *(f"- {a}" for a in review.anomalies), ""]
    lines += ["#### Totals by currency and product", "",
              "| currency | product | accounts | profitable | gross profit | fees | net credited | losses (no fee) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in review.by_product:
        cur = row["currency"]
        lines.append(f"| {cur} | {row['product']} | {row['accounts']} | {row['profitable']} | "
                     f"{shown(row['gross_profit'], cur)} | {shown(row['performance_fees'], cur)} | "
                     f"{shown(row['net_profit'], cur)} | {shown(row['losses'], cur)} |")
    for cur, total in review.totals().items():
        lines.append(f"| **{cur}** | **all** | **{total['accounts']}** | **{total['profitable']}** | "
                     f"**{shown(total['gross_profit'], cur)}** | **{shown(total['performance_fees'], cur)}** | "
                     f"**{shown(total['net_profit'], cur)}** | **{shown(total['losses'], cur)}** |")
    lines += ["", "#### Change against the previous distributed month (gross result: profits and losses)", ""]
    for cur, change in review.changes.items():
        if change["previous_period"] is None:
            lines.append(f"- {cur}: no earlier month distributed")
        else:
            pct = "n/a" if change["change_percent"] is None else f"{change['change_percent']:+}%"
            lines.append(f"- {cur}: gross result {shown(change['gross_profit'], cur)} vs "
                         f"{shown(change['previous_gross_profit'], cur)} in "
                         f"{change['previous_period']} ({change['previous_accounts']} accounts): {pct}")
    lines += ["", f"#### The {TOP_FEES} largest fees", ""]
    if not review.largest_fees:
        lines.append("- no fee this month")
    for cur, rows in review.largest_fees.items():
        lines += [f"| {cur} account | product | gross | fee |", "|---|---|---:|---:|"]
        lines += [f"| `{r['account_id']}` | {r['product']} | {shown(r['gross_profit'], cur)} | "
                  f"{shown(r['performance_fee'], cur)} |" for r in rows]
        lines.append("")
    lines += ["", f"#### Held back: {review.held_back_count} account(s), not part of this approval", ""]
    for held in review.held_back:
        why = ("missing " + ", ".join(date_ranges(held["missing_dates"]))) if held["missing_dates"] else \
            held.get("why") or "a later month of this high-water-mark account is already distributed"
        lines.append(f"- `{held['account_id']}`: {why}")
    if review.held_back_count > len(review.held_back):
        lines.append(f"- … and {review.held_back_count - len(review.held_back)} more (the run's summary lists them)")
    if review.drift_count:
        lines += ["", f"{review.drift_count} already distributed account(s) drifted: decided after this step."]
    lines += ["", f"<sub>fingerprint `{review.fingerprint}`: distribute writes exactly these rows or nothing</sub>"]
    return "\n".join(lines)


def printable(review: Review) -> str:
    """The same figures for a terminal (``make job``)."""
    text = render(review).replace("**", "").replace("`", "").replace("#### ", "\n")
    return "\n".join(line for line in text.splitlines() if not line.startswith("|---"))
