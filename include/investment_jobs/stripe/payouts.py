"""Pure payout rules: minor units, what a payout is asked for, and what a Stripe error means.

No Airflow, no database: the withdrawal job's decisions that can be tested alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from investment_jobs.money import currency as currency_of

ACTIVE = "active"


class PayoutAmountError(ValueError):
    """The amount cannot be paid exactly in the currency's minor unit."""


def payout_amount_minor(amount: Decimal, currency: str) -> int:
    """The amount as Stripe writes it for a payout: an integer in Stripe's representation of the
    currency (cents for usd, whole yen, fils for kwd, and 500 for 5 isk), exactly or not at all.

    We debit exactly what we pay, so an amount that does not fit is refused rather than rounded:
    more decimals than ISO's minor unit (what the ledger keeps) or than Stripe's, or not a multiple
    of Stripe's payout step (kwd/bhd/… in 0.010, huf/twd/isk/ugx in whole units).
    """
    row = currency_of(currency)
    for exponent in (row.iso_exponent, row.stripe_exponent):
        scaled = amount.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            whose = f"{currency}'s" if exponent == row.iso_exponent else f"Stripe's {currency}"
            raise PayoutAmountError(f"amount {amount} {currency} has more decimals than {whose} minor unit "
                                    f"({exponent})")
    minor = int(amount.scaleb(row.stripe_exponent))
    if minor <= 0:
        raise PayoutAmountError(f"amount {amount} {currency} is not positive")
    if minor % row.stripe_payout_step:
        step = Decimal(row.stripe_payout_step).scaleb(-row.stripe_exponent)
        raise PayoutAmountError(f"Stripe pays {currency} only in multiples of {step}, not {amount}")
    return minor


def idempotency_key(request_id: str) -> str:
    """The platform payout's key, and the name of the request's advisory lock."""
    return f"withdrawal-{request_id}"


def transfer_key(request_id: str) -> str:
    return f"withdrawal-{request_id}-transfer"


def connected_payout_key(request_id: str) -> str:
    return f"withdrawal-{request_id}-payout"


def reversal_key(request_id: str) -> str:
    return f"withdrawal-{request_id}-transfer-reversal"


def transfer_group(request_id: str) -> str:
    """Every Stripe object of one request's Connect payment carries it: found by it past the key window."""
    return f"withdrawal-{request_id}"


@dataclass(frozen=True)
class Rejection:
    reason: str


def rejection_for(*, account_status: str, currency: str, amount: Decimal, destination: Any,
                  available: Decimal) -> Rejection | int:
    """Why a request must be rejected before any money moves, or its amount in minor units."""
    if account_status != ACTIVE:
        return Rejection(f"account is {account_status}, not active")
    if not isinstance(destination, str) or not destination.strip():
        return Rejection("destination_details has no bank_account_id")
    connected = route_of(destination).connected_account
    if connected is not None and not CONNECTED_ACCOUNT.fullmatch(connected):
        return Rejection(f"destination_details.stripe_account is not a connected account id (acct_…): {connected!r}")
    try:
        minor = payout_amount_minor(amount, currency)
    except (PayoutAmountError, ValueError) as exc:
        return Rejection(str(exc))
    if amount > available:
        return Rejection(f"insufficient available balance: {available} available, {amount} requested")
    return minor


CONNECT_PREFIX = "connect:"
CONNECTED_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]+")


def destination_of(details: Any) -> Any:
    """Where a request is paid, as one comparable value: the platform payout's ``bank_account_id``
    (or ``card_id``), or ``connect:<stripe_account>[:<bank_account_id>]`` for a Connect payment.
    The same text as :data:`DESTINATION_SQL` gives in the database."""
    if not isinstance(details, dict):
        return None
    account = details.get("stripe_account")
    if account is not None:
        bank = details.get("bank_account_id")
        return f"{CONNECT_PREFIX}{account}" + (f":{bank}" if bank else "")
    return details.get("bank_account_id") or details.get("card_id")


DESTINATION_SQL = """CASE WHEN destination_details ? 'stripe_account'
    THEN 'connect:' || (destination_details->>'stripe_account')
         || coalesce(':' || (destination_details->>'bank_account_id'), '')
    ELSE coalesce(destination_details->>'bank_account_id', destination_details->>'card_id') END"""


@dataclass(frozen=True)
class Route:
    """How a request is paid: ``connected_account`` None is a platform payout to ``destination``;
    otherwise a transfer to the connected account, then its payout (to ``destination`` when given,
    else the connected account's default bank account)."""

    connected_account: str | None
    destination: str | None


def route_of(destination: str) -> Route:
    if destination.startswith(CONNECT_PREFIX):
        account, _, bank = destination[len(CONNECT_PREFIX):].partition(":")
        return Route(account, bank or None)
    return Route(None, destination)


def payout_params(*, request_id: str, account_id: str, user_id: str, amount_minor: int, currency: str,
                  destination: str | None) -> dict[str, Any]:
    """What a payout is created with. Fixed by the request alone, so a retry sends the very same."""
    params: dict[str, Any] = {
        "amount": amount_minor,
        "currency": currency,
        "method": "standard",
        "description": f"Withdrawal {request_id}",
        "metadata": {"withdrawal_request_id": request_id, "account_id": account_id, "user_id": user_id},
    }
    if destination is not None:
        params["destination"] = destination
    return params


def transfer_params(*, request_id: str, account_id: str, user_id: str, amount_minor: int, currency: str,
                    connected_account: str) -> dict[str, Any]:
    """The transfer of a Connect payment: the request's amount to the investor's connected account."""
    return {
        "amount": amount_minor,
        "currency": currency,
        "destination": connected_account,
        "transfer_group": transfer_group(request_id),
        "description": f"Withdrawal {request_id}",
        "metadata": {"withdrawal_request_id": request_id, "account_id": account_id, "user_id": user_id},
    }


# --- what an error means ------------------------------------------------------------------------
DEFINITE = "definite"  # Stripe refused: no payout was made, the request fails with the reason
AMBIGUOUS = "ambiguous"  # the payout may exist: keep processing, retry with the same key
CONFLICT = "conflict"  # our key was used with other parameters: an operator must look
PLATFORM = "platform"  # Stripe refused the platform's own key (401/403): stop, change no request


@dataclass(frozen=True)
class ErrorVerdict:
    kind: str
    code: str
    message: str


def classify_error(exc: Exception) -> ErrorVerdict:
    """Sort a stripe-python error into definite, ambiguous or a key conflict.

    Definite: 400/402/404 invalid requests (balance_insufficient, a bad destination). Platform: 401
    authentication and 403 permission, the platform's key and no request's fault (the run stops and
    changes no request). Ambiguous: connection errors and timeouts, 409, 429 and 5xx
    (after stripe-python's own retries with the same key). An ``idempotency_error`` 400 means this
    key was first used with other parameters, so a payout may exist: not ours to fail or retry.
    """
    import stripe

    status = getattr(exc, "http_status", None)
    error_object = getattr(exc, "error", None)
    code = getattr(exc, "code", None) or getattr(error_object, "code", None) or ""
    message = (getattr(exc, "user_message", None) or type(exc).__name__)[:500]
    if isinstance(exc, stripe.IdempotencyError):
        if status == 409 or code == "idempotency_key_in_use":
            return ErrorVerdict(AMBIGUOUS, code or "idempotency_key_in_use", message)
        return ErrorVerdict(CONFLICT, code or "idempotency_error", message)
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return ErrorVerdict(AMBIGUOUS, code or type(exc).__name__, message)
    if code == "account_invalid":  # one connected account is gone or not ours: that request's matter
        return ErrorVerdict(DEFINITE, code, message)
    if isinstance(exc, stripe.AuthenticationError) or status == 401:
        return ErrorVerdict(PLATFORM, code or "authentication_error", message)
    if isinstance(exc, stripe.PermissionError) or status == 403:
        return ErrorVerdict(PLATFORM, code or "permission_error", message)
    if status is not None and (status == 409 or status == 429 or status >= 500):
        return ErrorVerdict(AMBIGUOUS, code or f"http_{status}", message)
    if isinstance(exc, (stripe.InvalidRequestError, stripe.CardError)) or (status is not None and 400 <= status < 500):
        return ErrorVerdict(DEFINITE, code or f"http_{status}", message)
    return ErrorVerdict(AMBIGUOUS, code or type(exc).__name__, message)
