"""Seed a book of products and accounts, deterministically, with one COPY per table.

The demo book (also the tests' and the benchmark's). Account ids come from
:func:`investment_jobs_dev.standins.ml_engine_data.demo_account_id`, so the ML engine stand-in
serves the same accounts. ``python -m investment_jobs_dev.book --dsn ... --accounts 300``.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from investment_jobs_dev.standins.ml_engine_data import demo_account_id

PRODUCTS = (
    # name, currency, performance fee %
    ("Atlas Conservative", "usd", Decimal("10")),
    ("Orion Growth", "usd", Decimal("20")),
    ("Euro Balanced", "eur", Decimal("15")),
    ("Nikkei Momentum", "jpy", Decimal("25")),
    ("Gulf Income", "kwd", Decimal("12.5")),
)


@dataclass(frozen=True)
class SeededAccount:
    account_id: str
    product_id: str
    status: str
    opened_on: date
    closed_on: date | None
    initial_investment: Decimal


def product_id(seed: int, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"investment-jobs/product/{seed}/{index}"))


def plan_book(n_accounts: int, seed: int, first_open: date, last_open: date,
              suspended_share: float = 0.03, closed_share: float = 0.05) -> list[SeededAccount]:  # float-ok
    """The accounts to seed: mostly active, a few suspended, a few closed within the window."""
    rng = random.Random(seed)
    span = (last_open - first_open).days
    accounts = []
    for i in range(n_accounts):
        opened = first_open + timedelta(days=rng.randint(0, max(span, 0)))
        roll = rng.random()
        status, closed = "active", None
        if roll < suspended_share:
            status = "suspended"
        elif roll < suspended_share + closed_share:
            status = "closed"
            closed = opened + timedelta(days=rng.randint(20, 90))
        amount = Decimal(rng.randint(1_000, 250_000)) + Decimal(rng.randint(0, 99)) / 100
        accounts.append(SeededAccount(demo_account_id(seed, i), product_id(seed, i % len(PRODUCTS)),
                                      status, opened, closed, amount))
    return accounts


def _ts(day: date) -> datetime:
    return datetime.combine(day, time(9, 0), tzinfo=UTC)


def seed_book(conn, accounts: list[SeededAccount], seed: int) -> None:  # noqa: ANN001
    with conn.transaction():
        with conn.cursor().copy(
            "COPY investment.products (id, name, currency, performance_fee_percentage, status) FROM STDIN"
        ) as copy:
            for i, (name, currency, fee) in enumerate(PRODUCTS):
                copy.write_row((product_id(seed, i), name, currency, fee, "active"))
        with conn.cursor().copy(
            """COPY investment.accounts (id, user_id, product_id, status, initial_investment,
               current_balance, opened_at, closed_at) FROM STDIN"""
        ) as copy:
            for a in accounts:
                user = user_of(a.account_id)
                copy.write_row((a.account_id, user, a.product_id, a.status, a.initial_investment,
                                a.initial_investment, _ts(a.opened_on),
                                _ts(a.closed_on) if a.closed_on else None))


def engine_registration(accounts: list[SeededAccount]) -> list[dict]:
    """The stand-in's view of the same book (suspended accounts do not trade)."""
    return [{"account_id": a.account_id, "opened_on": a.opened_on.isoformat(),
             "closed_on": a.closed_on.isoformat() if a.closed_on else None,
             "initial_balance": str(a.initial_investment), "product_id": a.product_id,
             "trading": a.status != "suspended"} for a in accounts]


def user_of(account_id: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"investment-jobs/user/{account_id}")


def withdrawal_amount(rng: random.Random, balance: Decimal, currency: str) -> Decimal:
    """Up to a tenth of the balance, payable exactly in the currency (kwd in multiples of 0.010)."""
    from investment_jobs.money import minor_unit_exponent

    exponent = minor_unit_exponent(currency)
    step = Decimal("0.010") if exponent == 3 else Decimal(1).scaleb(-exponent)
    steps = max(int(balance / 10 / step), 1)
    return step * rng.randint(1, steps)


def seed_withdrawals(conn, accounts: list[SeededAccount], seed: int, count: int,  # noqa: ANN001
                     bank_transfer_share: float = 0.0, connect_share: float = 0.0) -> int:  # float-ok: shares
    """``count`` approved requests on active accounts, oldest first, with one COPY; ``connect_share``
    of the Stripe ones are paid through the investor's connected account (Stripe Connect)."""
    rng = random.Random(seed * 31 + count)
    active = [a for a in accounts if a.status == "active"]
    currency_of = {product_id(seed, i): c for i, (_, c, _) in enumerate(PRODUCTS)}
    with conn.transaction(), conn.cursor().copy(
        """COPY investment.withdrawal_requests (id, account_id, user_id, amount, withdrawal_method,
           destination_details, status, created_at) FROM STDIN"""
    ) as copy:
        for i in range(count):
            account = active[i % len(active)]
            method = "bank_transfer" if rng.random() < bank_transfer_share else "stripe_payout"
            amount = withdrawal_amount(rng, account.initial_investment / max(count // len(active), 1),
                                       currency_of[account.product_id])
            request_id = uuid.uuid5(uuid.NAMESPACE_URL, f"investment-jobs/withdrawal/{seed}/{i}")
            details = {"bank_account_id": f"ba_{request_id.hex[:16]}"}
            if method == "stripe_payout" and rng.random() < connect_share:
                details = connected_destination(account.account_id)
            copy.write_row((request_id, account.account_id, user_of(account.account_id), amount, method,
                            json.dumps(details), "approved",
                            datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)))
    return count


def connected_destination(account_id: Any) -> dict[str, str]:
    """An investor's connected account and its bank account, named after the investment account."""
    key = uuid.UUID(str(account_id)).hex[:16]
    return {"stripe_account": f"acct_{key}", "bank_account_id": f"ba_{key}"}


def connected_accounts_in(conn) -> list[dict[str, Any]]:  # noqa: ANN001
    """The connected accounts the book's requests name, as the Stripe stand-in registers them."""
    rows = conn.execute(
        """SELECT DISTINCT destination_details->>'stripe_account', destination_details->>'bank_account_id'
           FROM investment.withdrawal_requests WHERE destination_details ? 'stripe_account'""").fetchall()
    return [{"id": account, "external_accounts": [bank] if bank else []} for account, bank in rows]


def main(argv: list[str] | None = None) -> int:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--first-open", type=date.fromisoformat, default=date(2025, 6, 1))
    parser.add_argument("--last-open", type=date.fromisoformat, required=True)
    parser.add_argument("--withdrawals", type=int, default=0, help="approved withdrawal requests to add")
    parser.add_argument("--connect-share", type=float, default=0.0,  # float-ok: a share
                        help="share of the Stripe withdrawals paid through Stripe Connect")
    args = parser.parse_args(argv)
    with psycopg.connect(args.dsn) as conn:
        if conn.execute("SELECT count(*) FROM investment.accounts").fetchone()[0]:
            print("book already seeded")
            return 0
        book = plan_book(args.accounts, args.seed, args.first_open, args.last_open)
        seed_book(conn, book, args.seed)
        if args.withdrawals:
            seed_withdrawals(conn, book, args.seed, args.withdrawals, bank_transfer_share=0.1,
                             connect_share=args.connect_share)
    print(f"seeded {len(PRODUCTS)} products, {len(book)} accounts and {args.withdrawals} approved withdrawals")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
