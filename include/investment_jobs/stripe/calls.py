"""Every Stripe call the package makes, one small function each, on a ``StripeClient``.

The withdrawal job's state machine calls these and sees only :class:`Payout` (our own record of
what Stripe answered) and :class:`StripeCallError` (what an error means, sorted by
:func:`~investment_jobs.stripe.payouts.classify_error`), never stripe-python's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from investment_jobs.stripe.payouts import ErrorVerdict, classify_error

if TYPE_CHECKING:
    from stripe import StripeClient

# The Stripe API version this code was written and tested against (stripe-python 16.1.0's), sent on
# every request so a change of the account's default version at Stripe cannot change an answer.
STRIPE_API_VERSION = "2026-10-28.endive"

T = TypeVar("T")


class StripeCallError(Exception):
    """A Stripe call failed; ``verdict`` says what that means for the request (and the run)."""

    def __init__(self, verdict: ErrorVerdict, http_status: int | None, error_type: str) -> None:
        super().__init__(f"{verdict.code}: {verdict.message}")
        self.verdict = verdict
        self.http_status = http_status
        self.error_type = error_type  # stripe-python's class name, e.g. AuthenticationError

    @property
    def unknown_object(self) -> bool:
        """Stripe does not know the object asked for (404 ``resource_missing``)."""
        return self.http_status == 404 or self.verdict.code == "resource_missing"


@dataclass(frozen=True)
class Payout:
    """What Stripe says of one payout, as the job needs it."""

    id: str
    amount: int
    currency: str
    status: str
    request_id: str | None  # metadata withdrawal_request_id
    failure_code: str | None = None
    failure_message: str | None = None


def _payout(obj: Any) -> Payout:
    metadata = obj.metadata.to_dict() if obj.metadata else {}
    return Payout(obj.id, obj.amount, obj.currency, obj.status, metadata.get("withdrawal_request_id"),
                  obj.failure_code, obj.failure_message)


def _call(fn: Callable[[], T]) -> T:
    import stripe

    try:
        return fn()
    except stripe.StripeError as exc:
        raise StripeCallError(classify_error(exc), getattr(exc, "http_status", None), type(exc).__name__) from None


def create_payout(client: StripeClient, params: dict[str, Any], idempotency_key: str,
                  rate_limit_attempts: int) -> Payout:
    """``POST /v1/payouts`` with the request's key. stripe-python retries connection errors, 409 and
    5xx with the same key; 429s are retried here (a refused request stores nothing at Stripe)."""
    import stripe
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    retrying = Retrying(stop=stop_after_attempt(max(rate_limit_attempts, 1)),
                        wait=wait_exponential(multiplier=0.5, max=8),
                        retry=retry_if_exception_type(stripe.RateLimitError), reraise=True)
    return _call(lambda: _payout(retrying(
        lambda: client.v1.payouts.create(params=params, options={"idempotency_key": idempotency_key}))))


def retrieve_payout(client: StripeClient, payout_id: str) -> Payout:
    """``GET /v1/payouts/{id}``."""
    return _call(lambda: _payout(client.v1.payouts.retrieve(payout_id)))


def payouts_created_since(client: StripeClient, since: datetime) -> Iterator[Payout]:
    """``GET /v1/payouts?created[gte]=…``, newest first, 100 a page, every page."""
    listing = _call(lambda: client.v1.payouts.list(params={"limit": 100, "created": {"gte": int(since.timestamp())}}))
    pages = iter(listing.auto_paging_iter())
    while True:
        payout = _call(lambda: next(pages, None))
        if payout is None:
            return
        yield _payout(payout)


def find_payout_by_metadata(client: StripeClient, request_id: str) -> Payout | None:
    """The payout a request made, by its metadata (past Stripe's 24 h idempotency window)."""
    listing = _call(lambda: client.v1.payouts.list(params={"limit": 100}))
    pages = iter(listing.auto_paging_iter())
    while (payout := _call(lambda: next(pages, None))) is not None:
        found = _payout(payout)
        if found.request_id == request_id:
            return found
    return None


def available_currencies(client: StripeClient) -> list[str]:
    """``GET /v1/balance``: the currencies the platform's balance holds (the connection test)."""
    balance = _call(lambda: client.v1.balance.retrieve())
    return sorted(b.currency for b in balance.available)
