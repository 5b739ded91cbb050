"""Withdrawal requests in a test's book: add them, read their state, the accounts' balances."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from decimal import Decimal


def accounts_by_currency(book) -> dict[str, list[tuple[str, str, Decimal]]]:
    """Active accounts per currency: (account id, user id, balance)."""
    rows = book.query(
        """SELECT p.currency, a.id::text, a.user_id::text, a.current_balance
           FROM investment.accounts a JOIN investment.products p ON p.id = a.product_id
           WHERE a.status = 'active' ORDER BY a.id""")
    out: dict[str, list] = defaultdict(list)
    for currency, aid, uid, balance in rows:
        out[currency].append((aid, uid, balance))
    return out


def add_request(book, account: tuple[str, str, Decimal], amount: str, *, method: str = "stripe_payout",
                destination: object = None, status: str = "approved", created_offset: int = 0) -> str:
    request_id = str(uuid.uuid4())
    details = {"bank_account_id": f"ba_{request_id[:8]}"} if destination is None else destination
    with book.connect() as conn:
        conn.execute(
            """INSERT INTO investment.withdrawal_requests (id, account_id, user_id, amount, withdrawal_method,
                   destination_details, status, created_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, timestamptz '2026-01-01' + %s * interval '1 second')""",
            (request_id, account[0], account[1], Decimal(amount), method, json.dumps(details), status,
             created_offset))
    return request_id


def requests(book) -> dict[str, dict]:
    rows = book.query(
        """SELECT id::text, status, rejection_reason, payout_id, payout_status, failure_code, failure_message,
                  last_error, needs_operator, payout_amount_minor, currency
           FROM investment.withdrawal_requests""")
    keys = ("status", "rejection_reason", "payout_id", "payout_status", "failure_code", "failure_message",
            "last_error", "needs_operator", "payout_amount_minor", "currency")
    return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}


def balances(book) -> dict[str, Decimal]:
    return dict(book.query("SELECT id::text, current_balance FROM investment.accounts"))
