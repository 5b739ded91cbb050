"""What must hold after any fault, checked against records the package does not write: the Stripe
stand-in's own ledger, the ML engine stand-in's own data (its generator, a pure function of seed,
account and date) and recomputations here, in Decimal, from the raw rows.

Each check returns a :class:`Check`: how many things it looked at and every violation, named.
``during=True`` skips what only holds once the faults have stopped and the clean runs are done
(every engine item stored, nothing left in flight).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from investment_jobs_dev.standins.ml_engine_data import EngineAccount, accounts_in, daily_item

MINOR_DIGITS = {"usd": 2, "eur": 2, "jpy": 0, "kwd": 3}  # ISO 4217, written here independently
TWR_QUANTUM = Decimal("1E-10")


@dataclass
class Check:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, detail: str) -> None:
        self.violations.append(detail)


def _rows(conn, query: str, params: tuple = ()) -> list[tuple]:  # noqa: ANN001
    return conn.execute(query, params).fetchall()


def payouts_once(conn, stripe_payouts: list[dict], *, during: bool = False) -> Check:  # noqa: ANN001
    """No request paid twice; every payout Stripe made matches exactly one request, which names it
    (while the faults last, a request whose answer was lost may not name it yet: it is still
    ``processing``, and the next run finds it by its key or its metadata)."""
    check = Check("every payout made once and matched to exactly one request")
    requests = {rid: payout for rid, payout, status in _rows(
        conn, "SELECT id::text, payout_id, status FROM investment.withdrawal_requests")
        if not (during and payout is None and status == "processing")}
    known = {r[0] for r in _rows(conn, "SELECT id::text FROM investment.withdrawal_requests")}
    per_request = Counter(p.get("metadata", {}).get("withdrawal_request_id") for p in stripe_payouts)
    for payout in stripe_payouts:
        check.checked += 1
        request = payout.get("metadata", {}).get("withdrawal_request_id")
        if request not in known:
            check.fail(f"payout {payout['id']} names no known request ({request!r})")
        elif per_request[request] > 1:
            check.fail(f"request {request} has {per_request[request]} payouts at Stripe")
        elif request in requests and requests[request] != payout["id"]:
            check.fail(f"request {request} records payout {requests[request]!r}, Stripe made {payout['id']}")
    return check


def requests_settled(conn, stripe_payouts: list[dict], *, during: bool) -> Check:  # noqa: ANN001
    """A completed request's payout is paid at Stripe for its amount (while the faults last it may
    have turned failed since: the next settle reverses the request); once the faults have stopped,
    no request is left ``processing`` without a reason (an operator case or a recorded error)."""
    check = Check("completed requests paid at Stripe; none left processing without a reason")
    by_id = {p["id"]: p for p in stripe_payouts}
    for rid, status, payout_id, amount_minor, case, needs, last_error in _rows(conn, """
            SELECT id::text, status, payout_id, payout_amount_minor, operator_case, needs_operator, last_error
            FROM investment.withdrawal_requests"""):
        check.checked += 1
        payout = by_id.get(payout_id or "")
        if status == "completed":
            if payout is None:
                check.fail(f"request {rid} completed with payout {payout_id!r} that Stripe does not have")
            elif during and payout["status"] == "failed" and payout["amount"] == amount_minor:
                pass  # the bank returned it after it was paid: the next settle reverses the request
            elif payout["status"] != "paid" or payout["amount"] != amount_minor:
                check.fail(f"request {rid} completed; Stripe's payout is {payout['status']} for {payout['amount']}")
        if not during and status == "processing" and not (case or needs or last_error):
            check.fail(f"request {rid} is still processing with no reason recorded")
    return check


def ledger(conn) -> Check:  # noqa: ANN001
    """Each account's movements add up: every withdrawal transaction's balance_after follows from its
    balance_before, one per completed request; total_withdrawn = withdrawals − reversals; the
    balance = the newest stored day's closing balance (the seeded one before any) − net withdrawals."""
    check = Check("each account's balance movements equal the sum of its transactions")
    for tid, kind, amount, before, after in _rows(conn, """
            SELECT id::text, type, amount, balance_before, balance_after FROM investment.transactions
            WHERE type IN ('withdrawal', 'withdrawal_reversal')"""):
        check.checked += 1
        expected = before - amount if kind == "withdrawal" else before + amount
        if after != expected:
            check.fail(f"transaction {tid} ({kind} {amount}): balance {before} → {after}, expected {expected}")
    for rid, count in _rows(conn, """
            SELECT w.id::text, count(t.id) FROM investment.withdrawal_requests w
            LEFT JOIN investment.transactions t ON t.withdrawal_request_id = w.id AND t.type = 'withdrawal'
            WHERE w.status = 'completed' GROUP BY w.id HAVING count(t.id) <> 1"""):
        check.fail(f"completed request {rid} has {count} withdrawal transactions")
    rows = _rows(conn, """
        WITH moved AS (
            SELECT account_id, sum(CASE WHEN type = 'withdrawal' THEN amount ELSE -amount END) AS net_out
            FROM investment.transactions WHERE type IN ('withdrawal', 'withdrawal_reversal') GROUP BY account_id
        ), newest AS (
            SELECT DISTINCT ON (account_id) account_id, closing_balance
            FROM investment.daily_performance ORDER BY account_id, date DESC
        )
        SELECT a.id::text, a.current_balance, a.total_withdrawn, a.initial_investment, n.closing_balance,
               coalesce(m.net_out, 0)
        FROM investment.accounts a LEFT JOIN moved m ON m.account_id = a.id
        LEFT JOIN newest n ON n.account_id = a.id""")
    for aid, balance, withdrawn, initial, closing, net_out in rows:
        check.checked += 1
        if withdrawn != net_out:
            check.fail(f"account {aid}: total_withdrawn {withdrawn}, its transactions say {net_out}")
        expected = max((closing if closing is not None else initial) - net_out, Decimal(0))
        if balance != expected:
            check.fail(f"account {aid}: balance {balance}, expected {expected} (newest close {closing}, out {net_out})")
    return check


def engine_accounts(conn) -> dict[str, EngineAccount]:  # noqa: ANN001
    """The engine stand-in's view of the book, read as the stand-in reads it at its start."""
    return {a.account_id: a for a in accounts_in(conn)}


def daily_rows(conn, engine_seed: int, accounts: dict[str, EngineAccount], dates: list[date], *,  # noqa: ANN001
               during: bool) -> list[Check]:
    """One row per (account, stored date), equal to the engine's item; once the faults have stopped,
    every item the engine lists for a processed date is stored; the cumulative fields equal a
    recomputation from the account's daily rows."""
    values = Check("daily rows: one per (account, date), each equal to the engine's own data")
    chained = Check("cumulative return fields equal a recomputation from the daily rows")
    stored = _rows(conn, """
        SELECT account_id::text, date, opening_balance, closing_balance, daily_return, daily_return_percentage,
               trades_executed, winning_trades, losing_trades, cumulative_return, cumulative_return_percentage
        FROM investment.daily_performance ORDER BY account_id, date""")
    seen: Counter = Counter()
    running: dict[str, tuple[Decimal, Decimal]] = {}
    for aid, day, opening, closing, ret, pct, trades, won, lost, cum, cum_pct in stored:
        values.checked += 1
        chained.checked += 1
        seen[(aid, day)] += 1
        item = daily_item(engine_seed, accounts[aid], day) if aid in accounts else None
        if item is None:
            values.fail(f"{aid} {day}: stored for an account the engine does not know")
        elif (opening, closing, ret, pct, trades, won, lost) != (
                Decimal(item["opening_balance"]), Decimal(item["closing_balance"]), Decimal(item["daily_return"]),
                Decimal(item["daily_return_percentage"]), item["trades_executed"], item["winning_trades"],
                item["losing_trades"]):
            values.fail(f"{aid} {day}: stored ({closing}, {ret}, {pct}) differs from the engine's "
                        f"({item['closing_balance']}, {item['daily_return']}, {item['daily_return_percentage']})")
        total, chain = running.get(aid, (Decimal(0), Decimal(0)))
        total += ret
        chain = ((100 + chain) * (100 + pct) * Decimal("0.01") - 100).quantize(TWR_QUANTUM, ROUND_HALF_EVEN)
        running[aid] = (total, chain)
        if (cum, cum_pct) != (total, chain):
            chained.fail(f"{aid} {day}: cumulative ({cum}, {cum_pct}), recomputed ({total}, {chain})")
    for key, count in seen.items():
        if count > 1:
            values.fail(f"{key[0]} {key[1]}: {count} rows")
    if not during:
        active = {r[0] for r in _rows(conn, "SELECT id::text FROM investment.accounts WHERE status <> 'suspended'")}
        for day in dates:
            for aid, account in accounts.items():
                if aid in active and account.listed_on(day) and (aid, day) not in seen:
                    values.fail(f"{aid} {day}: the engine lists it, nothing stored")
    return [values, chained]


def distributions(conn, months: list[str]) -> Check:  # noqa: ANN001
    """Exactly one distribution per (account, month), its figures equal a recomputation from the
    account's daily rows of the month (simple fee: the rate of a positive gross, half-even in the
    currency's minor unit, never above the gross)."""
    check = Check("one distribution per (account, month), equal to a recomputation")
    gross_of = defaultdict(Decimal)
    for aid, period, gross in _rows(conn, """
            SELECT account_id::text, to_char(date, 'YYYY-MM'), sum(daily_return) FROM investment.daily_performance
            GROUP BY 1, 2"""):
        gross_of[(aid, period)] = gross
    rows = _rows(conn, """
        SELECT d.account_id::text, d.period, d.status, d.gross_profit, d.performance_fee_percentage,
               d.performance_fee_amount, d.net_profit, p.currency, p.fee_model
        FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
        WHERE d.period = ANY(%s)""", (months,))
    per_key = Counter((r[0], r[1]) for r in rows)
    for aid, period, status, gross, rate, fee, net, currency, model in rows:
        check.checked += 1
        if per_key[(aid, period)] > 1:
            check.fail(f"{aid} {period}: {per_key[(aid, period)]} distributions")
        expected_gross = gross_of.get((aid, period), Decimal(0))
        if gross != expected_gross:
            check.fail(f"{aid} {period}: gross {gross}, its daily rows sum to {expected_gross}")
            continue
        if model != "simple":
            continue  # the soak's book has simple fees only
        if gross <= 0:
            expected = ("no_profit", Decimal(0), Decimal(0))
        else:
            unit = Decimal(1).scaleb(-MINOR_DIGITS[currency])
            expected_fee = min((gross * rate / 100).quantize(unit, ROUND_HALF_EVEN), gross.quantize(unit, ROUND_FLOOR))
            expected = ("distributed", expected_fee, gross - expected_fee)
        if (status, fee, net) != expected:
            check.fail(f"{aid} {period}: ({status}, fee {fee}, net {net}), recomputed {expected}")
    return check


def no_staging_left(conn) -> Check:  # noqa: ANN001
    check = Check("no staging table left behind")
    tables = [r[0] for r in _rows(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'investment_staging'")]
    check.checked = 1
    for table in tables:
        check.fail(f"investment_staging.{table} is still there")
    return check
