"""Withdrawals held for review (issue 15), step by step against real PostgreSQL and the Stripe
stand-in: held requests are reserved and never paid until approved; a declined one ends rejected
with no call to Stripe. The HITL page itself is answered on a real scheduler in tests/stack."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from investment_jobs.config import CurrencyAmounts
from investment_jobs.jobs.withdrawals import review
from investment_jobs.jobs.withdrawals.claim import claim_requests
from investment_jobs.jobs.withdrawals.pay import pay_requests
from tests.support.paths import STRIPE_TEST_KEY
from tests.support.withdrawals import accounts_by_currency, add_request, requests

pytestmark = pytest.mark.integration

THRESHOLD = CurrencyAmounts({"usd": Decimal("1000")})
WINDOW = timedelta(hours=24)


def stripe_client(stripe):  # noqa: ANN001, ANN201
    from stripe import StripeClient

    return StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stripe.url}, max_network_retries=0)


@pytest.fixture
def held(book, stripe_standin):  # noqa: ANN001, ANN201
    """Three usd requests: one large (held), one to a destination already paid (paid), one small to a
    new destination (held)."""
    accounts = accounts_by_currency(book)["usd"]
    known = add_request(book, accounts[0], "50.00", destination={"bank_account_id": "ba_known"})
    with book.connect() as conn:  # the account was paid to ba_known before (with its ledger row)
        (tx,) = conn.execute("""INSERT INTO investment.transactions (account_id, user_id, type, amount,
                                    balance_before, balance_after, withdrawal_request_id, status, processed_at)
                                VALUES (%s, %s, 'withdrawal', 0, 0, 0, %s, 'completed', now()) RETURNING id""",
                             (accounts[0][0], accounts[0][1], known)).fetchone()
        conn.execute("""UPDATE investment.withdrawal_requests SET status = 'completed', transaction_id = %s,
                        processed_at = now() WHERE id = %s""", (tx, known))
    large = add_request(book, accounts[0], "1000.00", destination={"bank_account_id": "ba_known"}, created_offset=1)
    routine = add_request(book, accounts[0], "20.00", destination={"bank_account_id": "ba_known"}, created_offset=2)
    fresh = add_request(book, accounts[1], "20.00", destination={"bank_account_id": "ba_new"}, created_offset=3)
    with psycopg.connect(book.dsn) as conn:
        claimed = claim_requests(conn, "run-1", 100, THRESHOLD)
    return book, stripe_standin, {"large": large, "routine": routine, "fresh": fresh}, claimed


def test_held_requests_are_reserved_but_never_paid_until_approved(held) -> None:  # noqa: ANN001
    book, stripe, ids, claimed = held
    assert claimed["claimed"] == 3 and claimed["held_for_review"] == 2
    reasons = dict(book.query("SELECT id::text, review_reason FROM investment.withdrawal_requests "
                              "WHERE review_status = 'pending_review'"))
    assert set(reasons) == {ids["large"], ids["fresh"]}
    assert "WITHDRAWAL_REVIEW_THRESHOLD" in reasons[ids["large"]] and "ba_new" in reasons[ids["fresh"]]
    client = stripe_client(stripe)
    with psycopg.connect(book.dsn) as conn:
        paid = pay_requests(conn, client, WINDOW)
        paid_again = pay_requests(conn, client, WINDOW)  # a retry, or the next run, before the review
    assert paid["payouts_created"] == 1 and paid_again["payouts_created"] == 0
    assert [r["withdrawal_request_id"] for r in stripe.requests()] == [ids["routine"]]
    state = requests(book)
    assert state[ids["large"]]["status"] == state[ids["fresh"]]["status"] == "processing"  # still reserved
    assert state[ids["large"]]["payout_id"] is None

    with psycopg.connect(book.dsn) as conn:
        page = review.pending(conn)
        assert [h.request_id for h in page] == [ids["large"], ids["fresh"]]
        assert page[0].paid_before == 1 and page[1].paid_before == 0
        approved, declined = review.read_answer([page[0].approve, page[1].decline],
                                                review.figures(page)["requests"])
        done = review.apply(conn, approved, declined, "ana", "destination not verified")
        assert done == {"approved": [ids["large"]], "declined": [ids["fresh"]]}
        assert review.apply(conn, approved, declined, "ana", "again") == {"approved": [], "declined": []}
        paid_reviewed = pay_requests(conn, client, WINDOW, only=done["approved"])
    assert paid_reviewed["payouts_created"] == 1
    logged = [r["withdrawal_request_id"] for r in stripe.requests()]
    assert logged == [ids["routine"], ids["large"]] and ids["fresh"] not in logged  # never sent to Stripe
    state = requests(book)
    assert state[ids["fresh"]]["status"] == "rejected"
    assert state[ids["fresh"]]["rejection_reason"] == "declined by ana: destination not verified"
    assert state[ids["large"]]["payout_id"] is not None
    assert book.query("SELECT reviewed_by, review_status FROM investment.withdrawal_requests WHERE id = %s",
                      (ids["large"],)) == [("ana", "approved")]


def test_approving_and_declining_one_request_is_refused(held) -> None:  # noqa: ANN001
    book, _, ids, _ = held
    with psycopg.connect(book.dsn) as conn:
        page = review.pending(conn)
    with pytest.raises(review.ContradictoryAnswer, match=ids["large"]):
        review.read_answer([page[0].approve, page[0].decline], review.figures(page)["requests"])
    assert review.read_answer([review.LATER], review.figures(page)["requests"]) == ([], [])


def test_without_a_threshold_nothing_is_held(book, stripe_standin) -> None:  # noqa: ANN001
    account = accounts_by_currency(book)["usd"][0]
    add_request(book, account, "5000.00")
    with psycopg.connect(book.dsn) as conn:
        claimed = claim_requests(conn, "run-1", 100, CurrencyAmounts({}))
    assert claimed["held_for_review"] == 0
    assert book.query("SELECT count(*) FROM investment.withdrawal_requests WHERE review_status IS NOT NULL") == [(0,)]
