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


def two_runs_at_once(first_batch: int) -> None:
    """Two withdrawal runs in threads at once (claim in a small batch first, so they interleave, then
    the rest; pay; settle), each on its own connection and client; raises what either raised."""
    import threading
    from datetime import timedelta

    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, pay, settle
    from investment_jobs.stripe.hook import StripeHook

    errors: list[BaseException] = []

    def one_run(name: str) -> None:
        try:
            with connect() as conn:
                client = StripeHook().get_conn()
                claim.claim_requests(conn, name, first_batch)
                claim.claim_requests(conn, name, 1000)
                pay.pay_requests(conn, client, timedelta(hours=23))
                settle.settle_payouts(conn, client, timedelta(days=10))
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
