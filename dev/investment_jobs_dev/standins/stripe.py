"""The Stripe stand-in: a stateful HTTP server that follows Stripe's API for what the job uses.

Platform and connected accounts (the ``Stripe-Account`` header scopes a call to one; an account
the platform does not have is a 403 ``account_invalid``): ``POST /v1/payouts`` (form-encoded),
``GET /v1/payouts/{id}``, ``GET /v1/payouts`` (newest first, ``limit``/``starting_after``/
``created[gte|lt]``), ``GET /v1/balance``; on the platform ``POST /v1/transfers`` (to a connected
account), ``GET /v1/transfers[/{id}]`` (``transfer_group``), ``POST|GET
/v1/transfers/{id}/reversals``; ``GET /v1/balance_transactions`` (every money movement, with its
``fee`` and ``net``). Stripe's rules for the ``Idempotency-Key`` header, per account (first result
stored and replayed, same key with other parameters is a 400 ``idempotency_error``, a key still in
flight is a 409, a request refused before it executed stores nothing) and Stripe's error bodies.
Payouts draw their account's balance down; a payout is ``pending`` when created and ``paid`` from
its first read on (unless ``hold`` is switched on) or when ``POST /_admin/advance`` says the banks
answered. Every change is an event (``payout.created|paid|failed|canceled``,
``transfer.created|reversed``) delivered, signed, to the webhook endpoint set with ``POST
/_admin/webhooks`` (see :mod:`.stripe_webhooks` for the delivery faults).

Fault switches (``POST /_admin/faults``, JSON; each ``*_next`` counts down per create call):
``fail_next`` (status codes answered before executing: 429, 500, 503 — nothing stored),
``error_after_create_next`` (object made, a 500 stored and replayed), ``drop_after_create_next``
(made, result stored, connection dropped without a reply), ``slow_after_create_next`` +
``slow_seconds`` (made, reply later than the client waits), ``hold`` (payouts stay
``in_transit``), ``in_flight_seconds`` (a create holds its key that long before executing, so a
concurrent request with the same key gets a 409), ``payout_fee`` (minor units Stripe keeps per
platform payout), ``refuse_reversals`` (a transfer reversal is refused: the connected account
cannot cover it), ``rate_limit`` (API requests per second it accepts, as Stripe's limit per
account; the excess gets 429 ``rate_limit`` and stores nothing). ``GET /_admin/stats`` also says
how many API requests were ever in flight at once and the most payouts created in one second.
``POST /_admin/payouts/{id}`` sets a payout's status (e.g. ``paid`` →
``failed`` with a ``failure_code``: the money returns to its account) or plants another
``amount``; ``POST /_admin/balance`` sets the platform's available balance per currency, ``POST
/_admin/connected_accounts`` adds connected accounts, ``POST /_admin/forget_keys`` ends every
key's 24 h window.

Built on the standard library's threading HTTP server so a dropped connection is a real one.
Run it with ``python -m investment_jobs_dev.standins.stripe``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import secrets
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from investment_jobs_dev.standins.stripe_webhooks import Deliveries, WebhookEndpoint

PAYOUT_STATUSES = ("pending", "in_transit", "paid", "failed", "canceled")
DEFAULT_BALANCE = 10**12  # minor units per currency, unless set

# Stripe's own currency rules (https://docs.stripe.com/currencies: zero-decimal currencies,
# three-decimal currencies, special cases), written here apart from the package's table on purpose:
# a test that pays through the stand-in then checks the package against Stripe, not against itself.
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv",
                          "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})  # the last digit must be 0
TWO_DECIMALS_MUST_BE_00 = frozenset({"isk", "ugx"})  # zero-decimal in effect, written with two decimals
PAYOUTS_IN_WHOLE_UNITS = frozenset({"huf", "twd"})  # payout amounts evenly divisible by 100


def decimals_of(currency: str) -> int:
    """How many decimals Stripe's integer amount carries for ``currency``."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def major_amount(amount: int, currency: str) -> str:
    """What an integer payout amount is worth in the currency's major unit, as Stripe reads it."""
    from decimal import Decimal

    return str(Decimal(amount).scaleb(-decimals_of(currency)))


@dataclass
class Faults:
    fail_next: list[int] = field(default_factory=list)
    error_after_create_next: int = 0
    drop_after_create_next: int = 0
    slow_after_create_next: int = 0
    slow_seconds: float = 3.0  # float-ok: seconds
    hold: bool = False
    in_flight_seconds: float = 0.0  # float-ok: seconds a create holds its key before executing (409s)
    payout_fee: int = 0  # minor units Stripe charges per payout (its balance transaction's fee)
    refuse_reversals: bool = False  # transfer reversals are refused (the connected account cannot cover them)
    rate_limit: int = 0  # API requests accepted per second (0: no limit); the rest get 429 rate_limit

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Faults:
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault switches: {sorted(unknown)}")
        return cls(
            fail_next=[int(s) for s in body.get("fail_next", [])],
            error_after_create_next=int(body.get("error_after_create_next", 0)),
            drop_after_create_next=int(body.get("drop_after_create_next", 0)),
            slow_after_create_next=int(body.get("slow_after_create_next", 0)),
            slow_seconds=float(body.get("slow_seconds", 3.0)),  # float-ok: seconds
            hold=bool(body.get("hold", False)),
            in_flight_seconds=float(body.get("in_flight_seconds", 0.0)),  # float-ok: seconds
            payout_fee=int(body.get("payout_fee", 0)),
            refuse_reversals=bool(body.get("refuse_reversals", False)),
            rate_limit=max(int(body.get("rate_limit", 0)), 0),
        )


@dataclass
class Stored:
    """A stored idempotent result: what the first request with a key got."""

    fingerprint: str
    status: int
    body: dict[str, Any]


PLATFORM = ""  # the balance scope of the platform itself (no Stripe-Account header)
SAVED = ("payouts", "order", "available", "accounts", "connected_balances", "transfers", "transfer_order",
         "reversals", "balance_transactions", "events")


class TrafficMeter:
    """What a load test asks of the traffic: requests in flight at once, payouts created per second,
    and the rate limit's sliding one-second window. Its own lock: a request waiting for the state
    lock is in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.recent: deque[float] = deque()  # float-ok: monotonic times of the last second's accepted requests
        self.payouts_per_second: Counter[int] = Counter()

    def enter(self, rate_limit: int) -> bool:
        """A request arrives: False when the last second already took ``rate_limit`` of them."""
        now = time.monotonic()
        with self.lock:
            while self.recent and now - self.recent[0] >= 1:
                self.recent.popleft()
            if rate_limit and len(self.recent) >= rate_limit:
                return False
            self.recent.append(now)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def payout_created(self) -> None:
        with self.lock:
            self.payouts_per_second[int(time.time())] += 1  # clock-ok: the stand-in's own clock

    def figures(self) -> dict[str, int]:
        with self.lock:
            return {"max_in_flight": self.max_in_flight,
                    "max_payouts_in_a_second": max(self.payouts_per_second.values(), default=0),
                    "seconds_with_payouts": len(self.payouts_per_second)}


class StripeState:
    def __init__(self, api_key: str, state_file: str | None = None) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.state_file = state_file
        self.deliveries = Deliveries()
        self.reset()
        self.load()

    # Like Stripe, what was created survives a restart (make job starts the stand-in per run).
    def load(self) -> None:
        if not self.state_file:
            return
        try:
            with open(self.state_file) as handle:
                saved = json.load(handle)
        except (FileNotFoundError, ValueError):
            return
        for name in SAVED:
            if name in saved:
                setattr(self, name, saved[name])
        self.keys = {k: Stored(*v) for k, v in saved["keys"].items()}

    def save(self) -> None:
        """Write the state (the caller holds the lock); atomic, so a kill never leaves half a file."""
        if not self.state_file:
            return
        import os

        temporary = f"{self.state_file}.tmp"
        with open(temporary, "w") as handle:
            json.dump({**{name: getattr(self, name) for name in SAVED},
                       "keys": {k: [v.fingerprint, v.status, v.body] for k, v in self.keys.items()}}, handle)
        os.replace(temporary, self.state_file)

    def reset(self) -> None:
        self.restricted_keys: set[str] = set()
        self.payouts: dict[str, dict[str, Any]] = {}  # every account's; "_account" says whose
        self.order: list[str] = []  # creation order
        self.keys: dict[str, Stored] = {}
        self.in_flight: set[str] = set()
        self.available: dict[str, int] = {}  # the platform's available balance per currency
        self.accounts: dict[str, dict[str, Any]] = {}  # connected accounts
        self.connected_balances: dict[str, dict[str, int]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.transfer_order: list[str] = []
        self.reversals: dict[str, dict[str, Any]] = {}
        self.balance_transactions: list[dict[str, Any]] = []  # creation order, "_account" says whose
        self.events: list[dict[str, Any]] = []
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.meter = TrafficMeter()
        # every authorised create request as it arrived: what a test proves "no call was made" with
        self.request_log: list[dict[str, Any]] = []
        with self.deliveries.wake:
            self.deliveries.pending.clear()
            self.deliveries.attempts.clear()
            self.deliveries.endpoint = WebhookEndpoint()

    def now(self) -> int:
        return int(time.time())  # clock-ok: the stand-in's own clock, as Stripe's

    def balance_of(self, currency: str, account: str = PLATFORM) -> int:
        if account == PLATFORM:
            return self.available.setdefault(currency, DEFAULT_BALANCE)
        return self.connected_balances.setdefault(account, {}).setdefault(currency, 0)

    def move(self, account: str, currency: str, amount: int, type_: str, source: str, fee: int = 0) -> str:
        """Change one balance and write the balance transaction that says so; returns its id."""
        self.balance_of(currency, account)
        balances = self.available if account == PLATFORM else self.connected_balances[account]
        balances[currency] += amount - fee
        txn = {"id": f"txn_{secrets.token_hex(12)}", "object": "balance_transaction", "amount": amount,
               "currency": currency, "fee": fee, "net": amount - fee, "type": type_, "source": source,
               "status": "available", "created": self.now(), "_account": account}
        self.balance_transactions.append(txn)
        return txn["id"]

    def emit(self, type_: str, obj: dict[str, Any], account: str = PLATFORM) -> None:
        """An event as Stripe sends it; queued for the webhook endpoint, if one is set."""
        event = {"id": f"evt_{secrets.token_hex(12)}", "object": "event", "api_version": STANDIN_API_VERSION,
                 "created": self.now(), "type": type_, "livemode": False, "pending_webhooks": 1,
                 "data": {"object": public(obj)}}
        if account != PLATFORM:
            event["account"] = account
        self.events.append(event)
        self.deliveries.enqueue(event)


STANDIN_API_VERSION = "2026-10-28.endive"


def public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _error(status: int, type_: str, message: str, code: str | None = None,
           param: str | None = None) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"type": type_, "message": message,
                             "request_log_url": "https://dashboard.stripe.test/logs/req_standin"}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}


def _fingerprint(path: str, params: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps([path, sorted(params)]).encode()).hexdigest()


def _metadata(params: list[tuple[str, str]]) -> dict[str, str]:
    return {k[len("metadata["):-1]: v for k, v in params if k.startswith("metadata[") and k.endswith("]")}


def _read_payout(state: StripeState, payout: dict[str, Any]) -> dict[str, Any]:
    """A payout as a read shows it: a created payout is paid from its first read on."""
    if payout["status"] in ("pending", "in_transit") and payout["_reads"] >= 0:
        _set_status(state, payout, "in_transit" if state.faults.hold else "paid")
    payout["_reads"] += 1
    return public(payout)


def _set_status(state: StripeState, payout: dict[str, Any], status: str, failure_code: str | None = None,
                failure_message: str | None = None) -> None:
    """Move a payout to ``status``; a failed or canceled one gives its money back; announce it."""
    if status == payout["status"]:
        return
    account = payout["_account"]
    if status in ("failed", "canceled") and payout["status"] not in ("failed", "canceled"):
        kind = "payout_failure" if status == "failed" else "payout_cancel"
        state.move(account, payout["currency"], payout["amount"], kind, payout["id"])
    payout.update(status=status, failure_code=failure_code, failure_message=failure_message)
    if status in ("paid", "failed", "canceled"):
        state.emit(f"payout.{status}", payout, account)
    elif status == "in_transit":
        state.emit("payout.updated", payout, account)


def _amount(form: dict[str, str], currency: str) -> int | tuple[int, dict[str, Any]]:
    """The integer amount, by Stripe's currency rules, or the error Stripe answers."""
    try:
        amount = int(form.get("amount", ""))
    except ValueError:
        return _error(400, "invalid_request_error", "Invalid integer: amount", "parameter_invalid_integer",
                      "amount")
    if amount <= 0:
        return _error(400, "invalid_request_error", "Amount must be a positive integer.", "amount_too_small",
                      "amount")
    if currency in THREE_DECIMAL and amount % 10:
        return _error(400, "invalid_request_error",
                      f"Amounts in {currency} must be a multiple of 10 (the last decimal must be 0).",
                      "invalid_amount", "amount")
    if currency in TWO_DECIMALS_MUST_BE_00 and amount % 100:
        return _error(400, "invalid_request_error",
                      f"Invalid amount. Currency {currency.upper()} has become effectively zero-decimal and "
                      "amounts must be evenly divisible by 100.", "invalid_charge_amount_no_decimal_compatible",
                      "amount")
    return amount


def _currency(form: dict[str, str]) -> str | tuple[int, dict[str, Any]]:
    currency = form.get("currency", "")
    if not currency or currency != currency.lower() or len(currency) != 3:
        return _error(400, "invalid_request_error", "Invalid currency: must be a lowercase ISO code.",
                      "parameter_invalid_string", "currency")
    return currency


def _priced(form: dict[str, str]) -> tuple[str, int] | tuple[int, dict[str, Any]]:
    """(currency, amount) of a create call by Stripe's rules, or the error Stripe answers."""
    currency = _currency(form)
    if isinstance(currency, tuple):
        return currency
    amount = _amount(form, currency)
    if isinstance(amount, tuple):
        return amount
    return currency, amount


def create_payout(state: StripeState, params: list[tuple[str, str]], account: str = PLATFORM
                  ) -> tuple[int, dict[str, Any]]:
    """Validate and make one payout from ``account``'s balance (the caller holds the state lock)."""
    form = dict(params)
    priced = _priced(form)
    if isinstance(priced[0], int):
        return priced  # type: ignore[return-value]
    currency, amount = priced
    if currency in PAYOUTS_IN_WHOLE_UNITS and amount % 100:
        return _error(400, "invalid_request_error",
                      f"Payouts in {currency.upper()} must be evenly divisible by 100 (whole units).",
                      "invalid_amount", "amount")
    destination = form.get("destination")
    known = state.accounts[account]["external_accounts"] if account != PLATFORM else None
    if destination is None and known:
        destination = known[0]  # a connected account's default external account
    if (destination is not None and not destination.startswith(("ba_", "card_"))) or (
            known is not None and destination not in known):
        return _error(400, "invalid_request_error", f"No such external account: '{destination}'",
                      "resource_missing", "destination")
    fee = state.faults.payout_fee if account == PLATFORM else 0
    if amount + fee > state.balance_of(currency, account):
        return _error(400, "invalid_request_error",
                      "You have insufficient funds in your Stripe account for this transfer.",
                      "balance_insufficient")
    now = state.now()
    payout = {
        "id": f"po_{secrets.token_hex(12)}", "object": "payout", "amount": amount, "currency": currency,
        "status": "pending", "destination": destination, "metadata": _metadata(params), "created": now,
        "arrival_date": now + 2 * 86400, "automatic": False, "method": form.get("method", "standard"),
        "type": "bank_account" if (destination or "ba_").startswith("ba_") else "card",
        "balance_transaction": None, "description": form.get("description"),
        "statement_descriptor": form.get("statement_descriptor"), "failure_code": None,
        "failure_message": None, "livemode": False, "_reads": 0, "_account": account,
    }
    payout["balance_transaction"] = state.move(account, currency, -amount, "payout", payout["id"], fee)
    state.payouts[payout["id"]] = payout
    state.order.append(payout["id"])
    state.stats["payouts_created"] += 1
    state.emit("payout.created", payout, account)
    return 200, public(payout)


def create_transfer(state: StripeState, params: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """A transfer from the platform's balance to a connected account's (the caller holds the lock)."""
    form = dict(params)
    priced = _priced(form)
    if isinstance(priced[0], int):
        return priced  # type: ignore[return-value]
    currency, amount = priced
    destination = form.get("destination", "")
    if destination not in state.accounts:
        return _error(400, "invalid_request_error", f"No such destination: '{destination}'", "resource_missing",
                      "destination")
    if amount > state.balance_of(currency):
        return _error(400, "invalid_request_error",
                      "You have insufficient funds in your Stripe account for this transfer.",
                      "balance_insufficient")
    transfer = {
        "id": f"tr_{secrets.token_hex(12)}", "object": "transfer", "amount": amount, "currency": currency,
        "destination": destination, "destination_payment": f"py_{secrets.token_hex(12)}",
        "metadata": _metadata(params), "transfer_group": form.get("transfer_group"),
        "description": form.get("description"), "created": state.now(), "reversed": False, "amount_reversed": 0,
        "reversals": {"object": "list", "data": [], "has_more": False}, "livemode": False,
    }
    transfer["balance_transaction"] = state.move(PLATFORM, currency, -amount, "transfer", transfer["id"])
    state.move(destination, currency, amount, "payment", transfer["destination_payment"])
    state.transfers[transfer["id"]] = transfer
    state.transfer_order.append(transfer["id"])
    state.stats["transfers_created"] += 1
    state.emit("transfer.created", transfer)
    return 200, transfer


def create_reversal(state: StripeState, transfer_id: str, params: list[tuple[str, str]]
                    ) -> tuple[int, dict[str, Any]]:
    """Give (part of) a transfer back: from the connected account's balance to the platform's."""
    transfer = state.transfers.get(transfer_id)
    if transfer is None:
        return _error(404, "invalid_request_error", f"No such transfer: '{transfer_id}'", "resource_missing", "id")
    form = dict(params)
    left = transfer["amount"] - transfer["amount_reversed"]
    try:
        amount = int(form.get("amount", left))
    except ValueError:
        return _error(400, "invalid_request_error", "Invalid integer: amount", "parameter_invalid_integer", "amount")
    if amount <= 0 or amount > left:
        return _error(400, "invalid_request_error", f"Transfer {transfer_id} has only {left} left to reverse.",
                      "transfer_already_reversed" if left == 0 else "amount_too_large", "amount")
    currency, account = transfer["currency"], transfer["destination"]
    if amount > state.balance_of(currency, account) or state.faults.refuse_reversals:
        return _error(400, "invalid_request_error", "The connected account's balance cannot cover the reversal.",
                      "balance_insufficient")
    reversal = {"id": f"trr_{secrets.token_hex(12)}", "object": "transfer_reversal", "amount": amount,
                "currency": currency, "transfer": transfer_id, "metadata": _metadata(params),
                "created": state.now()}
    reversal["balance_transaction"] = state.move(PLATFORM, currency, amount, "transfer_refund", reversal["id"])
    state.move(account, currency, -amount, "payment_refund", reversal["id"])
    state.reversals[reversal["id"]] = reversal
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
    transfer["reversals"]["data"].insert(0, reversal)
    state.stats["reversals_created"] += 1
    state.emit("transfer.reversed", transfer)
    return 200, reversal


def _page(objects: list[dict[str, Any]], query: dict[str, str], url: str,
          read: Any = public) -> tuple[int, dict[str, Any]]:
    """Stripe's list shape over ``objects`` (newest first): limit, starting_after, created[gte|lt]."""
    try:
        limit = int(query.get("limit", "10"))
        gte = int(query.get("created[gte]", "0"))
        lt = int(query.get("created[lt]", str(2**62)))
    except ValueError:
        return _error(400, "invalid_request_error", "Invalid integer", "parameter_invalid_integer")
    if not 1 <= limit <= 100:
        return _error(400, "invalid_request_error", "limit must be between 1 and 100", param="limit")
    selected = [o for o in objects if gte <= o["created"] < lt]
    for name in ("transfer_group", "destination", "type"):
        if name in query:
            selected = [o for o in selected if o.get(name) == query[name]]
    after = query.get("starting_after")
    if after:
        ids = [o["id"] for o in selected]
        if after not in ids:
            return _error(400, "invalid_request_error", f"No such object: '{after}'", "resource_missing",
                          "starting_after")
        selected = selected[ids.index(after) + 1:]
    page = selected[:limit]
    return 200, {"object": "list", "url": url, "has_more": len(selected) > limit, "data": [read(o) for o in page]}


class Handler(BaseHTTPRequestHandler):
    server: StandInServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one small reply per request: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    # --- plumbing --------------------------------------------------------------------------
    @property
    def state(self) -> StripeState:
        return self.server.state

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: dict[str, Any] | list[Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(8)}")
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped waiting (a timeout): its loss, not ours

    def _drop(self) -> None:
        """Close the socket without a reply: the client sees a dropped connection."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _authorised(self, write: bool = False) -> bool:
        with self.state.lock:  # which API version each call asked for (the client pins one)
            self.state.stats[f"Stripe-Version: {self.headers.get('Stripe-Version')}"] += 1
        header = self.headers.get("Authorization", "")
        if header == f"Bearer {self.state.api_key}":
            return True
        if header.removeprefix("Bearer ") in self.state.restricted_keys:
            if not write:
                return True
            with self.state.lock:
                self.state.stats["refused 403"] += 1
            self._send(*_error(403, "invalid_request_error",
                               "The provided key does not have the required permissions for this endpoint.",
                               "secret_key_required"))
            return False
        # Like Stripe, never echo the key that was sent.
        with self.state.lock:
            self.state.stats["refused 401"] += 1
        self._send(*_error(401, "invalid_request_error", "Invalid API Key provided."))
        return False

    def _account(self) -> str | None:
        """The ``Stripe-Account`` the request acts for (PLATFORM without one); None after a 403."""
        account = self.headers.get("Stripe-Account") or PLATFORM
        if account != PLATFORM and account not in self.state.accounts:
            self._send(*_error(403, "invalid_request_error",
                               f"The provided key does not have access to account '{account}' (or that account "
                               "does not exist). Application access may have been revoked.", "account_invalid"))
            return None
        return account

    # --- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.startswith("/_admin/"):
            return self._admin_get(url.path)
        return self._metered(self._api_get, url, query)

    def _metered(self, handle: Any, *args: Any) -> None:
        """An API request: admitted by the rate limit, and counted in flight while it is handled."""
        if not self._admitted():
            return None
        try:
            return handle(*args)
        finally:
            self.state.meter.leave()

    def _admitted(self) -> bool:
        """Counted in flight, or refused with Stripe's 429 when the second's requests are spent."""
        if self.state.meter.enter(self.state.faults.rate_limit):
            return True
        with self.state.lock:
            self.state.stats["rate limited 429"] += 1
        self._send(*_error(429, "rate_limit_error", "Request rate limit exceeded. Learn more about rate limits "
                                                   "here https://stripe.com/docs/rate-limits.", "rate_limit"))
        return False

    def _api_get(self, url: Any, query: dict[str, str]) -> None:
        if not self._authorised():
            return None
        account = self._account()
        if account is None:
            return None
        parts = url.path.strip("/").split("/")
        state = self.state
        with state.lock:
            route = "/".join("{id}" if i == 2 else p for i, p in enumerate(parts) if i < 4)
            state.stats[f"GET /{route}"] += 1
            if url.path == "/v1/balance":
                balances = state.available if account == PLATFORM else state.connected_balances.get(account, {})
                available = [{"amount": v, "currency": c} for c, v in sorted(balances.items())]
                return self._send(200, {"object": "balance", "livemode": False, "pending": [], "available": available})
            if url.path == "/v1/payouts":
                mine = [state.payouts[i] for i in reversed(state.order) if state.payouts[i]["_account"] == account]
                return self._send(*_page(mine, query, url.path, lambda p: _read_payout(state, p)))
            if len(parts) == 3 and parts[1] == "payouts":
                payout = state.payouts.get(parts[2])
                if payout is None or payout["_account"] != account:
                    return self._send(*_error(404, "invalid_request_error", "No such payout", "resource_missing",
                                              "id"))
                return self._send(200, _read_payout(state, payout))
            if url.path == "/v1/transfers" and account == PLATFORM:
                return self._send(*_page([state.transfers[i] for i in reversed(state.transfer_order)], query,
                                         url.path))
            if len(parts) >= 3 and parts[1] == "transfers" and account == PLATFORM:
                transfer = state.transfers.get(parts[2])
                if transfer is None:
                    return self._send(*_error(404, "invalid_request_error", f"No such transfer: '{parts[2]}'",
                                              "resource_missing", "id"))
                if len(parts) == 4 and parts[3] == "reversals":
                    return self._send(*_page(transfer["reversals"]["data"], query, url.path))
                return self._send(200, transfer)
            if url.path == "/v1/balance_transactions":
                mine = [t for t in reversed(state.balance_transactions) if t["_account"] == account]
                return self._send(*_page(mine, query, url.path))
        return self._send(*_error(404, "invalid_request_error", f"Unrecognized request URL (GET: {url.path})"))

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        raw = self._body()
        if url.path.startswith("/_admin/"):
            return self._admin_post(url.path, raw)
        return self._metered(self._api_post, url, raw)

    def _api_post(self, url: Any, raw: bytes) -> None:
        if not self._authorised(write=True):
            return None
        account = self._account()
        if account is None:
            return None
        parts = url.path.strip("/").split("/")
        state = self.state
        if url.path == "/v1/payouts":
            def execute(params: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
                return create_payout(state, params, account)
        elif url.path == "/v1/transfers" and account == PLATFORM:
            def execute(params: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
                return create_transfer(state, params)
        elif len(parts) == 4 and parts[1] == "transfers" and parts[3] == "reversals" and account == PLATFORM:
            def execute(params: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
                return create_reversal(state, parts[2], params)
        else:
            return self._send(*_error(404, "invalid_request_error", f"Unrecognized request URL (POST: {url.path})"))
        return self._idempotent(url.path, account, parse_qsl(raw.decode(), keep_blank_values=True), execute)

    def _idempotent(self, path: str, account: str, params: list[tuple[str, str]], execute: Any) -> None:
        """Stripe's rules for a create call with an ``Idempotency-Key`` (scoped per account)."""
        route = "/v1/transfers/{id}/reversals" if path.endswith("/reversals") else path
        key = self.headers.get("Idempotency-Key")
        scoped_key = None if key is None else f"{account}:{key}"
        state = self.state
        form = dict(params)
        with state.lock:
            state.stats[f"POST {route}"] += 1
            state.request_log.append({"method": "POST", "path": path, "account": account or None,
                                      "idempotency_key": key,
                                      "withdrawal_request_id": form.get("metadata[withdrawal_request_id]"),
                                      "amount": form.get("amount"), "currency": form.get("currency")})
            faults = state.faults
            if faults.fail_next:  # refused before executing: nothing is stored
                status = faults.fail_next.pop(0)
                state.stats[f"injected {status}"] += 1
                kind = {429: "rate_limit_error", 401: "invalid_request_error", 403: "invalid_request_error",
                        402: "card_error"}.get(status, "api_error")
                return self._send(*_error(status, kind, f"Injected {status}", "rate_limit" if status == 429 else None))
            if scoped_key is not None:
                if len(key) > 255:
                    return self._send(*_error(400, "invalid_request_error", "Idempotency key is too long",
                                              param="Idempotency-Key"))
                if scoped_key in state.in_flight:
                    return self._send(*_error(409, "idempotency_error",
                                              "There is currently another in-progress request using this "
                                              "Idempotent Key (that probably means you submitted twice).",
                                              "idempotency_key_in_use"))
                stored = state.keys.get(scoped_key)
                if stored is not None:
                    if stored.fingerprint != _fingerprint(path, params):
                        return self._send(*_error(400, "idempotency_error",
                                                  "Keys for idempotent requests can only be used with the same "
                                                  "parameters they were first used with."))
                    state.stats["idempotent_replays"] += 1
                    return self._send(stored.status, stored.body)
                state.in_flight.add(scoped_key)
            hold_key = faults.in_flight_seconds
        if scoped_key is not None and hold_key:
            time.sleep(hold_key)  # the key is in flight: a concurrent request with it gets a 409
        with state.lock:
            faults = state.faults
            status, body = execute(params)
            after_effect = None
            if status == 200:
                if path == "/v1/payouts":
                    state.meter.payout_created()
                if faults.error_after_create_next:
                    faults.error_after_create_next -= 1
                    status, body = _error(500, "api_error", "An unknown error occurred")
                    after_effect = "error"
                elif faults.drop_after_create_next:
                    faults.drop_after_create_next -= 1
                    after_effect = "drop"
                elif faults.slow_after_create_next:
                    faults.slow_after_create_next -= 1
                    after_effect = "slow"
            if scoped_key is not None:
                # Refused by validation: nothing stored, a retry executes afresh (Stripe's rule).
                if status == 200 or after_effect == "error" or status >= 500:
                    state.keys[scoped_key] = Stored(_fingerprint(path, params), status, body)
                state.in_flight.discard(scoped_key)
            slow_seconds = faults.slow_seconds
            state.save()
        if after_effect == "drop":
            return self._drop()
        if after_effect == "slow":
            time.sleep(slow_seconds)
        return self._send(status, body)

    # --- admin -----------------------------------------------------------------------------
    def _admin_get(self, path: str) -> None:
        state = self.state
        with state.lock:
            if path == "/_admin/health":
                return self._send(200, {"ok": True})
            if path == "/_admin/payouts":  # every account's, with what each is worth by Stripe's rules
                return self._send(200, [{**public(p), "account": p["_account"] or None,
                                         "major_amount": major_amount(p["amount"], p["currency"])}
                                        for p in (state.payouts[i] for i in state.order)])
            if path == "/_admin/transfers":
                return self._send(200, [state.transfers[i] for i in state.transfer_order])
            if path == "/_admin/reversals":
                return self._send(200, list(state.reversals.values()))
            if path == "/_admin/balance_transactions":
                return self._send(200, [{**public(t), "account": t["_account"] or None}
                                        for t in state.balance_transactions])
            if path == "/_admin/connected_accounts":
                return self._send(200, [{**a, "balance": state.connected_balances.get(a["id"], {})}
                                        for a in state.accounts.values()])
            if path == "/_admin/requests":
                return self._send(200, state.request_log)
            if path == "/_admin/events":
                with state.deliveries.wake:
                    return self._send(200, {"events": state.events, "attempts": list(state.deliveries.attempts),
                                            "pending": [e["id"] for e in state.deliveries.pending]})
            if path == "/_admin/stats":
                return self._send(200, {"stats": dict(state.stats), "available": dict(state.available),
                                        "traffic": state.meter.figures()})
        return self._send(404, {"error": {"message": f"no admin route {path}"}})

    def _admin_post(self, path: str, raw: bytes) -> None:
        state = self.state
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "admin bodies are JSON"}})
        if path == "/_admin/webhooks/flush":  # outside the state lock: the endpoint may call back
            return self._send(200, state.deliveries.flush())
        with state.lock:
            if path == "/_admin/reset":
                state.reset()
                state.save()
                return self._send(200, {"ok": True})
            if path == "/_admin/faults":
                try:
                    state.faults = Faults.from_json(body)
                except (TypeError, ValueError) as exc:
                    return self._send(400, {"error": {"message": str(exc)}})
                return self._send(200, {"ok": True})
            if path == "/_admin/webhooks":  # the endpoint (url, secret) and its delivery faults
                try:
                    endpoint = WebhookEndpoint.from_json(body)
                except (TypeError, ValueError) as exc:
                    return self._send(400, {"error": {"message": str(exc)}})
                with state.deliveries.wake:
                    state.deliveries.endpoint = endpoint
                    state.deliveries.wake.notify()
                return self._send(200, {"ok": True})
            if path == "/_admin/balance":
                state.available.update({c.lower(): int(v) for c, v in body.items()})
                return self._send(200, dict(state.available))
            if path == "/_admin/connected_accounts":  # [{"id": "acct_…", "external_accounts": ["ba_…"]}]
                for account in body:
                    state.accounts[account["id"]] = {"id": account["id"], "object": "account",
                                                     "external_accounts": list(account.get("external_accounts", []))}
                    state.connected_balances.setdefault(account["id"], {})
                state.save()
                return self._send(200, list(state.accounts.values()))
            if path == "/_admin/restricted_keys":  # keys that may read but not create payouts (403)
                state.restricted_keys = {str(k) for k in body.get("keys", [])}
                return self._send(200, {"ok": True})
            if path == "/_admin/traffic/reset":  # the traffic meter starts again (a load test's own figures)
                state.meter = TrafficMeter()
                return self._send(200, {"ok": True})
            if path == "/_admin/forget_keys":  # Stripe's 24 h key window has passed
                state.keys.clear()
                return self._send(200, {"ok": True})
            if path == "/_admin/advance":  # the banks answer: every payout on its way is paid
                for payout in state.payouts.values():
                    if payout["status"] in ("pending", "in_transit"):
                        _set_status(state, payout, "paid")
                state.save()
                return self._send(200, {"ok": True})
            if path.startswith("/_admin/payouts/"):
                payout = state.payouts.get(path.rsplit("/", 1)[1])
                if payout is None:
                    return self._send(404, {"error": {"message": "no such payout"}})
                if "amount" in body:  # a planted difference: Stripe's record no longer says what we asked
                    payout["amount"] = int(body["amount"])
                status = body.get("status", payout["status"])
                if status not in PAYOUT_STATUSES:
                    return self._send(400, {"error": {"message": f"status must be one of {PAYOUT_STATUSES}"}})
                _set_status(state, payout, status, body.get("failure_code"), body.get("failure_message"))
                payout["_reads"] = -1 if status != "paid" else 0
                state.save()
                return self._send(200, public(payout))
        return self._send(404, {"error": {"message": f"no admin route {path}"}})


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: StripeState) -> None:
        super().__init__(address, Handler)
        self.state = state


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--faults", default=os.environ.get("STRIPE_STANDIN_FAULTS", ""),
                        help="fault switches as JSON (default: env STRIPE_STANDIN_FAULTS)")
    parser.add_argument("--state-file", help="keep payouts and idempotency keys here across restarts")
    args = parser.parse_args(argv)
    # The key it accepts comes from the environment, never from the command line (`ps` shows that).
    state = StripeState(api_key=os.environ.get("STRIPE_STANDIN_API_KEY", "sk_test_standin"),
                        state_file=args.state_file)
    if args.faults:
        state.faults = Faults.from_json(json.loads(args.faults))
    server = StandInServer((args.host, args.port), state)
    threading.Thread(target=state.deliveries.run_forever, name="webhook-deliveries", daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
