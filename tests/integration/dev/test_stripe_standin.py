"""The Stripe stand-in's Connect rules, through stripe-python: what the job's tests rely on."""

from __future__ import annotations

import pytest
import stripe

from tests.support.paths import STRIPE_TEST_KEY

pytestmark = pytest.mark.integration


@pytest.fixture
def client(stripe_standin):
    stripe_standin.balance(usd=100_000)
    stripe_standin.connected_accounts({"id": "acct_a", "external_accounts": ["ba_a"]},
                                      {"id": "acct_b", "external_accounts": ["ba_b"]})
    return stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": stripe_standin.url}, max_network_retries=0)


def test_a_connected_accounts_objects_are_its_own(client, stripe_standin):
    transfer = client.v1.transfers.create(params={"amount": 500, "currency": "usd", "destination": "acct_a"})
    payout = client.v1.payouts.create(params={"amount": 500, "currency": "usd"}, options={"stripe_account": "acct_a"})
    assert payout.destination == "ba_a"  # the account's default bank account
    assert client.v1.payouts.list().data == []  # not the platform's
    assert [p.id for p in client.v1.payouts.list(options={"stripe_account": "acct_a"}).data] == [payout.id]
    assert client.v1.payouts.list(options={"stripe_account": "acct_b"}).data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payouts.retrieve(payout.id, options={"stripe_account": "acct_b"})
    with pytest.raises(stripe.PermissionError) as refused:
        client.v1.payouts.list(options={"stripe_account": "acct_unknown"})
    assert refused.value.error.code == "account_invalid"
    from investment_jobs.stripe.payouts import DEFINITE, classify_error

    assert classify_error(refused.value).kind == DEFINITE  # that request's matter, not the platform key's
    balance = client.v1.balance.retrieve(options={"stripe_account": "acct_a"})
    assert [(b.currency, b.amount) for b in balance.available] == [("usd", 0)]
    assert client.v1.balance.retrieve().available[0].amount == 100_000 - 500
    assert transfer.destination == "acct_a"


def test_keys_are_per_account_and_a_transfer_is_given_back_once(client, stripe_standin):
    params = {"amount": 700, "currency": "usd", "destination": "acct_b", "transfer_group": "g"}
    first = client.v1.transfers.create(params=params, options={"idempotency_key": "k"})
    again = client.v1.transfers.create(params=params, options={"idempotency_key": "k"})
    assert first.id == again.id and len(stripe_standin.transfers()) == 1
    payout = client.v1.payouts.create(params={"amount": 700, "currency": "usd"},
                                      options={"idempotency_key": "k", "stripe_account": "acct_b"})
    assert payout.object == "payout"  # the same key on another account is another request
    stripe_standin.set_payout(payout.id, status="failed", failure_code="account_closed")
    reversal = client.v1.transfers.reversals.create(first.id, options={"idempotency_key": "r"})
    assert client.v1.transfers.reversals.create(first.id, options={"idempotency_key": "r"}).id == reversal.id
    with pytest.raises(stripe.InvalidRequestError):  # nothing left to give back
        client.v1.transfers.reversals.create(first.id)
    assert client.v1.transfers.retrieve(first.id).amount_reversed == 700
    assert [t.id for t in client.v1.transfers.list(params={"transfer_group": "g"}).data] == [first.id]
    assert client.v1.balance.retrieve().available[0].amount == 100_000
    kinds = [(t["type"], t["amount"], t["account"]) for t in stripe_standin.balance_transactions()]
    assert kinds == [("transfer", -700, None), ("payment", 700, "acct_b"), ("payout", -700, "acct_b"),
                     ("payout_failure", 700, "acct_b"), ("transfer_refund", 700, None),
                     ("payment_refund", -700, "acct_b")]


def test_balance_transactions_carry_stripes_fee(client, stripe_standin):
    stripe_standin.faults(payout_fee=25)
    client.v1.payouts.create(params={"amount": 1000, "currency": "usd", "destination": "ba_x"})
    [txn] = client.v1.balance_transactions.list().data
    assert (txn.type, txn.amount, txn.fee, txn.net) == ("payout", -1000, 25, -1025)
    assert client.v1.balance.retrieve().available[0].amount == 100_000 - 1025
