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
    created: int | None = None  # Stripe's unix time
    balance_transaction: str | None = None
    account: str | None = None  # the connected account it was made on (None: the platform)
    from_webhook: bool = False  # known from a verified webhook event, not read from Stripe


@dataclass(frozen=True)
class Transfer:
    """What Stripe says of one transfer to a connected account."""

    id: str
    amount: int
    currency: str
    destination: str
    request_id: str | None  # metadata withdrawal_request_id
    amount_reversed: int = 0
    reversal_ids: tuple[str, ...] = ()
    created: int | None = None
    balance_transaction: str | None = None


@dataclass(frozen=True)
class BalanceTransaction:
    """One movement of a balance as Stripe books it: ``amount`` signed, ``fee`` kept, ``net`` moved."""

    id: str
    amount: int
    currency: str
    fee: int
    net: int
    type: str
    source: str | None
    created: int


def _metadata(obj: Any) -> dict[str, Any]:
    return obj.metadata.to_dict() if getattr(obj, "metadata", None) else {}


def _payout(obj: Any, account: str | None = None) -> Payout:
    return Payout(obj.id, obj.amount, obj.currency, obj.status, _metadata(obj).get("withdrawal_request_id"),
                  obj.failure_code, obj.failure_message, getattr(obj, "created", None),
                  _id_of(getattr(obj, "balance_transaction", None)), account)


def _transfer(obj: Any) -> Transfer:
    reversals = getattr(obj, "reversals", None)
    ids = tuple(r.id for r in reversals.data) if reversals is not None else ()
    return Transfer(obj.id, obj.amount, obj.currency, _id_of(obj.destination) or "",
                    _metadata(obj).get("withdrawal_request_id"), obj.amount_reversed or 0, ids,
                    getattr(obj, "created", None), _id_of(getattr(obj, "balance_transaction", None)))


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    return value if value is None or isinstance(value, str) else getattr(value, "id", None)


def _options(stripe_account: str | None, idempotency_key: str | None = None) -> dict[str, str]:
    options = {"stripe_account": stripe_account} if stripe_account else {}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


def _call(fn: Callable[[], T]) -> T:
    import stripe

    try:
        return fn()
    except stripe.StripeError as exc:
        raise StripeCallError(classify_error(exc), getattr(exc, "http_status", None), type(exc).__name__) from None


def _rate_limited(rate_limit_attempts: int, create: Callable[[], T]) -> T:
    """stripe-python retries connection errors, 409 and 5xx with the same key; 429s are retried
    here (a refused request stores nothing at Stripe)."""
    import stripe
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    retrying = Retrying(stop=stop_after_attempt(max(rate_limit_attempts, 1)),
                        wait=wait_exponential(multiplier=0.5, max=8),
                        retry=retry_if_exception_type(stripe.RateLimitError), reraise=True)
    return retrying(create)


def create_payout(client: StripeClient, params: dict[str, Any], idempotency_key: str,
                  rate_limit_attempts: int, stripe_account: str | None = None) -> Payout:
    """``POST /v1/payouts`` with the request's key, on the platform or (``Stripe-Account``) on a
    connected account's balance."""
    options = _options(stripe_account, idempotency_key)
    return _call(lambda: _payout(_rate_limited(
        rate_limit_attempts, lambda: client.v1.payouts.create(params=params, options=options)), stripe_account))


def retrieve_payout(client: StripeClient, payout_id: str, stripe_account: str | None = None) -> Payout:
    """``GET /v1/payouts/{id}`` (on a connected account with ``stripe_account``)."""
    return _call(lambda: _payout(client.v1.payouts.retrieve(payout_id, options=_options(stripe_account)),
                                 stripe_account))


def create_transfer(client: StripeClient, params: dict[str, Any], idempotency_key: str,
                    rate_limit_attempts: int) -> Transfer:
    """``POST /v1/transfers``: the platform's balance to a connected account's."""
    options = _options(None, idempotency_key)
    return _call(lambda: _transfer(_rate_limited(
        rate_limit_attempts, lambda: client.v1.transfers.create(params=params, options=options))))


def retrieve_transfer(client: StripeClient, transfer_id: str) -> Transfer:
    """``GET /v1/transfers/{id}``, with its reversals."""
    return _call(lambda: _transfer(client.v1.transfers.retrieve(transfer_id)))


def find_transfer_by_group(client: StripeClient, transfer_group: str) -> Transfer | None:
    """The transfer a request made, by its ``transfer_group`` (past Stripe's 24 h key window)."""
    listing = _call(lambda: client.v1.transfers.list(params={"transfer_group": transfer_group, "limit": 10}))
    return _transfer(listing.data[0]) if listing.data else None


def reverse_transfer(client: StripeClient, transfer_id: str, params: dict[str, Any], idempotency_key: str,
                     rate_limit_attempts: int) -> str:
    """``POST /v1/transfers/{id}/reversals`` for the whole transfer; the reversal's id."""
    options = _options(None, idempotency_key)
    return _call(lambda: _rate_limited(rate_limit_attempts, lambda: client.v1.transfers.reversals.create(
        transfer_id, params=params, options=options)).id)


def _every(list_call: Callable[[], Any], convert: Callable[[Any], T]) -> Iterator[T]:
    listing = _call(list_call)
    pages = iter(listing.auto_paging_iter())
    while (obj := _call(lambda: next(pages, None))) is not None:
        yield convert(obj)


def _window(start: datetime, end: datetime) -> dict[str, Any]:
    return {"limit": 100, "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}}


def payouts_created_between(client: StripeClient, start: datetime, end: datetime,
                            stripe_account: str | None = None) -> Iterator[Payout]:
    """Every payout created in [start, end) on one account (the platform's without ``stripe_account``)."""
    return _every(lambda: client.v1.payouts.list(params=_window(start, end), options=_options(stripe_account)),
                  lambda obj: _payout(obj, stripe_account))


def transfers_created_between(client: StripeClient, start: datetime, end: datetime) -> Iterator[Transfer]:
    """Every transfer the platform made in [start, end)."""
    return _every(lambda: client.v1.transfers.list(params=_window(start, end)), _transfer)


def balance_transactions_between(client: StripeClient, start: datetime, end: datetime,
                                 stripe_account: str | None = None) -> Iterator[BalanceTransaction]:
    """Every balance transaction created in [start, end): how Stripe booked each movement."""
    return _every(
        lambda: client.v1.balance_transactions.list(params=_window(start, end), options=_options(stripe_account)),
        lambda t: BalanceTransaction(t.id, t.amount, t.currency, t.fee, t.net, t.type, _id_of(t.source), t.created))


def payouts_created_since(client: StripeClient, since: datetime) -> Iterator[Payout]:
    """``GET /v1/payouts?created[gte]=…``, newest first, 100 a page, every page."""
    listing = _call(lambda: client.v1.payouts.list(params={"limit": 100, "created": {"gte": int(since.timestamp())}}))
    pages = iter(listing.auto_paging_iter())
    while True:
        payout = _call(lambda: next(pages, None))
        if payout is None:
            return
        yield _payout(payout)


def find_payout_by_metadata(client: StripeClient, request_id: str, stripe_account: str | None = None
                            ) -> Payout | None:
    """The payout a request made, by its metadata (past Stripe's 24 h idempotency window)."""
    payouts = _every(lambda: client.v1.payouts.list(params={"limit": 100}, options=_options(stripe_account)),
                     lambda obj: _payout(obj, stripe_account))
    return next((p for p in payouts if p.request_id == request_id), None)


def available_currencies(client: StripeClient) -> list[str]:
    """``GET /v1/balance``: the currencies the platform's balance holds (the connection test)."""
    balance = _call(lambda: client.v1.balance.retrieve())
    return sorted(b.currency for b in balance.available)
