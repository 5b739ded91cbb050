"""The operator's actions on a withdrawal that needs one (issue 15), against real PostgreSQL and
the Stripe stand-in: each is checked against Stripe, then carried out through the job's own code
paths, so balances, the ledger, reservations and the outbox stay as the invariants require."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from investment_jobs.jobs.withdrawals import operator_cases as cases
from investment_jobs.jobs.withdrawals.claim import claim_requests
from investment_jobs.jobs.withdrawals.pay import pay_requests
from investment_jobs.jobs.withdrawals.state import IDEMPOTENCY_CONFLICT, PAYOUT_UNKNOWN, flag_operator
from tests.support.paths import STRIPE_TEST_KEY
from tests.support.withdrawals import accounts_by_currency, add_request, balances, requests

pytestmark = pytest.mark.integration

WINDOW = timedelta(hours=24)


@pytest.fixture
def desk(book, stripe_standin):  # noqa: ANN001, ANN201
    from stripe import StripeClient

    client = StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stripe_standin.url}, max_network_retries=0)
    return book, stripe_standin, client


def flagged(book, account, amount: str, case: str, *, paid_first: bool, client=None) -> str:  # noqa: ANN001
    """A claimed request flagged for an operator; ``paid_first``: Stripe already has its payout."""
    rid = add_request(book, account, amount)
    with psycopg.connect(book.dsn) as conn:
        claim_requests(conn, "run-1", 100)
        if paid_first:
            pay_requests(conn, client, WINDOW, only=[rid])
            conn.execute("UPDATE investment.withdrawal_requests SET payout_id = NULL WHERE id = %s", (rid,))
            conn.commit()
        flag_operator(conn, rid, "a test case", case)
    return rid


def invariants(book, before: dict[str, Decimal]) -> None:  # noqa: ANN001
    """Balance change == −Σ completed withdrawals' ledger rows; one outbox row per completion;
    processing requests are the only reservations."""
    after = balances(book)
    ledger = dict(book.query("""SELECT account_id::text, sum(amount) FROM investment.transactions
                                WHERE type = 'withdrawal' GROUP BY 1"""))
    for account, balance in before.items():
        assert balance - after[account] == ledger.get(account, Decimal(0)), account
    completed = {r for (r,) in book.query("SELECT id::text FROM investment.withdrawal_requests WHERE status = 'completed'")}
    outbox = {r for (r,) in book.query("SELECT withdrawal_request_id::text FROM investment.withdrawal_notifications")}
    assert outbox == completed
    assert book.query("""SELECT count(*) FROM investment.withdrawal_requests
                         WHERE status <> 'processing' AND needs_operator IS NOT NULL""") == [(0,)]


def test_mark_failed_when_stripe_has_no_payout_releases_the_reservation(desk) -> None:  # noqa: ANN001
    book, stripe, client = desk
    before = balances(book)
    rid = flagged(book, accounts_by_currency(book)["usd"][0], "40.00", IDEMPOTENCY_CONFLICT, paid_first=False)
    with psycopg.connect(book.dsn) as conn:
        case = cases.case_of(conn, rid)
        assert case.options() == [cases.LATER, cases.RETRY, cases.MARK_FAILED, cases.MARK_COMPLETED]
        assert cases.mark_failed(conn, client, case, "ana", "dashboard shows nothing") == "failed"
        assert cases.case_of(conn, rid) is None
    state = requests(book)[rid]
    assert state["status"] == "failed" and state["needs_operator"] is None
    assert book.query("SELECT failure_message FROM investment.withdrawal_requests WHERE id = %s", (rid,)) == [
        ("marked failed by ana: dashboard shows nothing",)]
    assert stripe.requests() == []
    invariants(book, before)


def test_mark_failed_is_refused_when_stripe_has_the_payout(desk) -> None:  # noqa: ANN001
    book, stripe, client = desk
    before = balances(book)
    rid = flagged(book, accounts_by_currency(book)["usd"][0], "40.00", IDEMPOTENCY_CONFLICT, paid_first=True,
                  client=client)
    with psycopg.connect(book.dsn) as conn, pytest.raises(cases.ActionRefused, match="Stripe has payout po_"):
        cases.mark_failed(conn, client, cases.case_of(conn, rid), "ana", None)
    state = requests(book)[rid]
    assert state["status"] == "processing" and state["needs_operator"] == "a test case"
    invariants(book, before)


def test_mark_completed_books_the_paid_payout_once(desk) -> None:  # noqa: ANN001
    book, stripe, client = desk
    before = balances(book)
    account = accounts_by_currency(book)["usd"][0]
    rid = flagged(book, account, "40.00", PAYOUT_UNKNOWN, paid_first=True, client=client)
    (payout,) = stripe.payouts()
    other = flagged(book, accounts_by_currency(book)["usd"][1], "7.00", PAYOUT_UNKNOWN, paid_first=False)
    with psycopg.connect(book.dsn) as conn:
        with pytest.raises(cases.ActionRefused, match="not this request's paid payout"):
            cases.mark_completed(conn, client, cases.case_of(conn, other), payout["id"])
        with pytest.raises(cases.ActionRefused, match="po_"):
            cases.mark_completed(conn, client, cases.case_of(conn, rid), "123")
        client.v1.payouts.retrieve(payout["id"])  # Stripe's read: the stand-in's payout is paid now
        assert cases.mark_completed(conn, client, cases.case_of(conn, rid), payout["id"]) == "completed"
        assert cases.case_of(conn, rid) is None
    state = requests(book)[rid]
    assert (state["status"], state["payout_id"], state["needs_operator"]) == ("completed", payout["id"], None)
    assert balances(book)[account[0]] == before[account[0]] - Decimal("40.00")
    assert book.query("""SELECT count(*) FROM investment.transactions WHERE withdrawal_request_id = %s
                         AND type = 'withdrawal'""", (rid,)) == [(1,)]
    assert requests(book)[other]["status"] == "processing"
    invariants(book, before)


def test_retry_pays_with_the_same_idempotency_key(desk) -> None:  # noqa: ANN001
    book, stripe, client = desk
    before = balances(book)
    rid = flagged(book, accounts_by_currency(book)["usd"][0], "40.00", IDEMPOTENCY_CONFLICT, paid_first=False)
    with psycopg.connect(book.dsn) as conn:
        assert pay_requests(conn, client, WINDOW)["payouts_created"] == 0  # flagged: the job leaves it
        assert cases.retry(conn, cases.case_of(conn, rid)).startswith("cleared")
        assert pay_requests(conn, client, WINDOW)["payouts_created"] == 1
    (sent,) = stripe.requests()
    assert sent["withdrawal_request_id"] == rid and sent["idempotency_key"].endswith(rid)
    assert requests(book)[rid]["payout_id"] is not None
    invariants(book, before)
