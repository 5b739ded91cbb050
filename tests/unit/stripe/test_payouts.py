"""Payout rules without Stripe or a database: minor units, claim decisions, error meanings."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from investment_jobs.jobs.withdrawals.claim import Candidate, decide_claims
from investment_jobs.stripe.payouts import (
    AMBIGUOUS,
    CONFLICT,
    DEFINITE,
    PLATFORM,
    PayoutAmountError,
    classify_error,
    idempotency_key,
    payout_amount_minor,
    payout_params,
)


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("125.40", "usd", 12540), ("0.01", "usd", 1), ("125.4000", "eur", 12540),
    ("1500", "jpy", 1500), ("1500.000", "jpy", 1500), ("7", "krw", 7),
    ("12.340", "kwd", 12340), ("0.010", "bhd", 10), ("5", "kwd", 5000),
    # Stripe's representation, not ISO's (defect 7 of issue 12): isk and ugx are written with two
    # decimals (5 isk is 500), mga is zero-decimal at Stripe, huf and twd are paid in whole units
    ("500", "isk", 50000), ("5", "isk", 500), ("1200", "ugx", 120000), ("1000", "mga", 1000),
    ("1234", "huf", 123400), ("250", "twd", 25000),
])
def test_minor_units_for_zero_two_and_three_decimal_currencies(amount: str, currency: str, minor: int) -> None:
    assert payout_amount_minor(Decimal(amount), currency) == minor


@pytest.mark.parametrize(("amount", "currency", "why"), [
    ("10.001", "usd", "more decimals than usd's minor unit (2)"),
    ("10.5", "jpy", "more decimals than jpy's minor unit (0)"),
    ("1.2345", "kwd", "more decimals than kwd's minor unit (3)"),
    ("1.234", "kwd", "only in multiples of 0.010"),
    ("0", "usd", "not positive"),
    ("1000.20", "mga", "more decimals than Stripe's mga minor unit (0)"),
    ("1234.50", "huf", "only in multiples of 1.00"),
    ("99.99", "twd", "only in multiples of 1.00"),
    ("5.5", "isk", "more decimals than isk's minor unit (0)"),
    ("-1.00", "usd", "not positive"),
])
def test_amounts_a_currency_cannot_pay_exactly_are_refused_not_rounded(amount: str, currency: str, why: str) -> None:
    with pytest.raises(PayoutAmountError, match=why.replace("(", r"\(").replace(")", r"\)")):
        payout_amount_minor(Decimal(amount), currency)


def test_the_payout_is_fixed_by_the_request_alone() -> None:
    """A retry must send byte-for-byte the same parameters, or Stripe refuses the key."""
    kwargs = {"request_id": "r1", "account_id": "a1", "user_id": "u1", "amount_minor": 100, "currency": "usd",
              "destination": "ba_1"}
    assert payout_params(**kwargs) == payout_params(**kwargs)
    assert payout_params(**kwargs)["metadata"] == {"withdrawal_request_id": "r1", "account_id": "a1", "user_id": "u1"}
    assert idempotency_key("r1") == "withdrawal-r1"


def candidate(request_id: str, amount: str, *, account: str = "a", balance: str = "100.00", status: str = "active",
              currency: str = "usd", destination: object = "ba_1", user: str = "u") -> Candidate:
    return Candidate(request_id, account, user, Decimal(amount), destination, "u", status, Decimal(balance), currency)


def test_claims_take_requests_oldest_first_within_the_available_balance() -> None:
    process, reject = decide_claims(
        [candidate("r1", "60.00"), candidate("r2", "30.00"), candidate("r3", "20.00"), candidate("r4", "10.00")],
        reserved={"a": Decimal("5.00")})
    assert [(c.request_id, minor) for c, minor in process] == [("r1", 6000), ("r2", 3000)]
    assert [(c.request_id, why) for c, why in reject][0] == (
        "r3", "insufficient available balance: 5.00 available, 20.00 requested")
    assert [c.request_id for c, _ in reject] == ["r3", "r4"]  # 5.00 left, 10.00 asked


def test_claim_rejections_name_the_reason() -> None:
    process, reject = decide_claims([
        candidate("closed", "1", account="b", status="closed"),
        candidate("nowhere", "1", account="c", destination=None),
        candidate("stranger", "1", account="d", user="someone-else"),
        candidate("too-fine", "1.001", account="e"),
    ], reserved={})
    assert process == []
    assert dict((c.request_id, why) for c, why in reject) == {
        "closed": "account is closed, not active",
        "nowhere": "destination_details has no bank_account_id",
        "stranger": "request's user_id does not own the account",
        "too-fine": "amount 1.001 usd has more decimals than usd's minor unit (2)",
    }


def _error(cls: type, status: int, **kwargs: object) -> Exception:
    if cls in (stripe.InvalidRequestError, stripe.CardError):
        return cls("msg", kwargs.get("param"), kwargs.get("code"), http_status=status)
    return cls("msg", http_status=status)


@pytest.mark.parametrize(("exc", "kind"), [
    (_error(stripe.InvalidRequestError, 400, code="balance_insufficient"), DEFINITE),
    (_error(stripe.InvalidRequestError, 404, code="resource_missing"), DEFINITE),
    # a wrong or rotated key is the platform's problem, not the request's (defect 6 of issue 12)
    (_error(stripe.AuthenticationError, 401), PLATFORM),
    (_error(stripe.PermissionError, 403), PLATFORM),
    (_error(stripe.CardError, 402, code="card_declined"), DEFINITE),
    (_error(stripe.IdempotencyError, 400), CONFLICT),
    (_error(stripe.RateLimitError, 429), AMBIGUOUS),
    (_error(stripe.APIError, 500), AMBIGUOUS),
    (_error(stripe.APIError, 503), AMBIGUOUS),
    (_error(stripe.APIError, 409), AMBIGUOUS),
    (stripe.APIConnectionError("timed out"), AMBIGUOUS),
])
def test_error_meanings(exc: Exception, kind: str) -> None:
    assert classify_error(exc).kind == kind


# --- Connect: routes, keys, the connected account's own errors ----------------------------------------
@pytest.mark.parametrize(("details", "destination", "route"), [
    ({"bank_account_id": "ba_1"}, "ba_1", (None, "ba_1")),
    ({"stripe_account": "acct_1"}, "connect:acct_1", ("acct_1", None)),
    ({"stripe_account": "acct_1", "bank_account_id": "ba_2"}, "connect:acct_1:ba_2", ("acct_1", "ba_2")),
])
def test_a_request_is_paid_on_the_platform_or_through_its_connected_account(details, destination, route) -> None:
    from investment_jobs.stripe.payouts import destination_of, route_of

    assert destination_of(details) == destination
    assert tuple(vars(route_of(destination)).values()) == route


def test_each_stripe_object_of_a_connect_payment_has_its_own_key_and_one_group() -> None:
    from investment_jobs.stripe.payouts import connected_payout_key, reversal_key, transfer_group, transfer_key

    keys = {idempotency_key("r"), transfer_key("r"), connected_payout_key("r"), reversal_key("r")}
    assert len(keys) == 4 and transfer_group("r") == "withdrawal-r"


def test_a_malformed_connected_account_is_rejected_before_money_moves() -> None:
    from investment_jobs.stripe.payouts import Rejection, rejection_for

    verdict = rejection_for(account_status="active", currency="usd", amount=Decimal("1"),
                            destination="connect:ba_123", available=Decimal("10"))
    assert isinstance(verdict, Rejection) and "not a connected account id" in verdict.reason
    assert rejection_for(account_status="active", currency="usd", amount=Decimal("1"),
                         destination="connect:acct_1", available=Decimal("10")) == 100


def test_a_connected_account_that_is_gone_fails_that_request_not_the_run() -> None:
    exc = stripe.PermissionError("no access to account 'acct_1'", http_status=403, code="account_invalid")
    assert classify_error(exc).kind == DEFINITE
    assert classify_error(stripe.PermissionError("restricted key", http_status=403)).kind == PLATFORM
