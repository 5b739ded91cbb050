"""The Stripe stand-in: a stateful HTTP server that follows Stripe's API for what the job uses.

``POST /v1/payouts`` (form-encoded), ``GET /v1/payouts/{id}``, ``GET /v1/payouts`` (newest first,
``limit``/``starting_after``/``created[gte]``), ``GET /v1/balance``, with Stripe's rules for the
``Idempotency-Key`` header (first result stored and replayed, same key with other parameters is a
400 ``idempotency_error``, a key still in flight is a 409, a request refused before it executed
stores nothing) and Stripe's error bodies. Payouts draw the available balance down; a payout is
``pending`` when created and ``paid`` from its first read on (unless ``hold`` is switched on).

Fault switches (``POST /_admin/faults``, JSON; each ``*_next`` counts down per create call):
``fail_next`` (status codes answered before executing: 429, 500, 503 — nothing stored),
``error_after_create_next`` (payout made, a 500 stored and replayed), ``drop_after_create_next``
(payout made, result stored, connection dropped without a reply), ``slow_after_create_next`` +
``slow_seconds`` (payout made, reply later than the client waits), ``hold`` (payouts stay
``in_transit``), ``in_flight_seconds`` (a create holds its key that long before executing, so a
concurrent request with the same key gets a 409). ``POST /_admin/payouts/{id}`` sets a payout's
status (e.g. ``paid`` → ``failed`` with a ``failure_code``), ``POST /_admin/balance`` sets the
available balance per currency, ``POST /_admin/forget_keys`` ends every key's 24 h window.

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
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
        )


@dataclass
class Stored:
    """A stored idempotent result: what the first request with a key got."""

    fingerprint: str
    status: int
    body: dict[str, Any]


class StripeState:
    def __init__(self, api_key: str, state_file: str | None = None) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.state_file = state_file
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
        self.payouts = saved["payouts"]
        self.order = saved["order"]
        self.keys = {k: Stored(*v) for k, v in saved["keys"].items()}
        self.available = saved["available"]

    def save(self) -> None:
        """Write the state (the caller holds the lock); atomic, so a kill never leaves half a file."""
        if not self.state_file:
            return
        import os

        temporary = f"{self.state_file}.tmp"
        with open(temporary, "w") as handle:
            json.dump({"payouts": self.payouts, "order": self.order, "available": self.available,
                       "keys": {k: [v.fingerprint, v.status, v.body] for k, v in self.keys.items()}}, handle)
        os.replace(temporary, self.state_file)

    def reset(self) -> None:
        self.restricted_keys: set[str] = set()
        self.payouts: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # creation order
        self.keys: dict[str, Stored] = {}
        self.in_flight: set[str] = set()
        self.available: dict[str, int] = {}
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        # every authorised POST /v1/payouts as it arrived: what a test proves "no call was made" with
        self.request_log: list[dict[str, Any]] = []

    def now(self) -> int:
        return int(time.time())  # clock-ok: the stand-in's own clock, as Stripe's

    def balance_of(self, currency: str) -> int:
        return self.available.setdefault(currency, DEFAULT_BALANCE)


def _error(status: int, type_: str, message: str, code: str | None = None,
           param: str | None = None) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"type": type_, "message": message,
                             "request_log_url": "https://dashboard.stripe.test/logs/req_standin"}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}


def _fingerprint(params: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(params)).encode()).hexdigest()


def _read_payout(state: StripeState, payout: dict[str, Any]) -> dict[str, Any]:
    """A payout as a read shows it: a created payout is paid from its first read on."""
    if payout["status"] in ("pending", "in_transit") and payout["_reads"] >= 0:
        payout["status"] = "in_transit" if state.faults.hold else "paid"
    payout["_reads"] += 1
    return {k: v for k, v in payout.items() if not k.startswith("_")}


def create_payout(state: StripeState, params: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """Validate and make one payout (the caller holds the state lock)."""
    form = dict(params)
    metadata = {k[len("metadata["):-1]: v for k, v in params if k.startswith("metadata[") and k.endswith("]")}
    currency = form.get("currency", "")
    if not currency or currency != currency.lower() or len(currency) != 3:
        return _error(400, "invalid_request_error", "Invalid currency: must be a lowercase ISO code.",
                      "parameter_invalid_string", "currency")
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
    if currency in PAYOUTS_IN_WHOLE_UNITS and amount % 100:
        return _error(400, "invalid_request_error",
                      f"Payouts in {currency.upper()} must be evenly divisible by 100 (whole units).",
                      "invalid_amount", "amount")
    destination = form.get("destination")
    if destination is not None and not destination.startswith(("ba_", "card_")):
        return _error(400, "invalid_request_error", f"No such external account: '{destination}'",
                      "resource_missing", "destination")
    if amount > state.balance_of(currency):
        return _error(400, "invalid_request_error",
                      "You have insufficient funds in your Stripe account for this transfer.",
                      "balance_insufficient")
    state.available[currency] -= amount
    now = state.now()
    payout = {
        "id": f"po_{secrets.token_hex(12)}", "object": "payout", "amount": amount, "currency": currency,
        "status": "pending", "destination": destination, "metadata": metadata, "created": now,
        "arrival_date": now + 2 * 86400, "automatic": False, "method": form.get("method", "standard"),
        "type": "bank_account" if (destination or "ba_").startswith("ba_") else "card",
        "balance_transaction": f"txn_{secrets.token_hex(12)}", "description": form.get("description"),
        "statement_descriptor": form.get("statement_descriptor"), "failure_code": None,
        "failure_message": None, "livemode": False, "_reads": 0,
    }
    state.payouts[payout["id"]] = payout
    state.order.append(payout["id"])
    state.stats["payouts_created"] += 1
    return 200, {k: v for k, v in payout.items() if not k.startswith("_")}


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

    # --- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        if url.path.startswith("/_admin/"):
            return self._admin_get(url.path)
        if not self._authorised():
            return None
        with self.state.lock:
            self.state.stats["GET /v1/payouts/{id}" if url.path.startswith("/v1/payouts/") else f"GET {url.path}"] += 1
            if url.path == "/v1/balance":
                body = {"object": "balance", "livemode": False,
                        "available": [{"amount": v, "currency": c} for c, v in sorted(self.state.available.items())],
                        "pending": []}
                return self._send(200, body)
            if url.path == "/v1/payouts":
                return self._send(*self._list(dict(query)))
            if url.path.startswith("/v1/payouts/"):
                payout = self.state.payouts.get(url.path.rsplit("/", 1)[1])
                if payout is None:
                    return self._send(*_error(404, "invalid_request_error", "No such payout", "resource_missing",
                                              "id"))
                return self._send(200, _read_payout(self.state, payout))
        return self._send(*_error(404, "invalid_request_error", f"Unrecognized request URL (GET: {url.path})"))

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            limit = int(query.get("limit", "10"))
            created_gte = int(query.get("created[gte]", "0"))
        except ValueError:
            return _error(400, "invalid_request_error", "Invalid integer", "parameter_invalid_integer")
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request_error", "limit must be between 1 and 100", param="limit")
        newest_first = [self.state.payouts[i] for i in reversed(self.state.order)]
        selected = [p for p in newest_first if p["created"] >= created_gte]
        after = query.get("starting_after")
        if after:
            ids = [p["id"] for p in selected]
            if after not in ids:
                return _error(400, "invalid_request_error", f"No such payout: '{after}'", "resource_missing",
                              "starting_after")
            selected = selected[ids.index(after) + 1:]
        page = selected[:limit]
        return 200, {"object": "list", "url": "/v1/payouts", "has_more": len(selected) > limit,
                     "data": [_read_payout(self.state, p) for p in page]}

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        raw = self._body()
        if url.path.startswith("/_admin/"):
            return self._admin_post(url.path, raw)
        if not self._authorised(write=True):
            return None
        if url.path != "/v1/payouts":
            return self._send(*_error(404, "invalid_request_error", f"Unrecognized request URL (POST: {url.path})"))
        params = parse_qsl(raw.decode(), keep_blank_values=True)
        key = self.headers.get("Idempotency-Key")
        state = self.state
        with state.lock:
            state.stats["POST /v1/payouts"] += 1
            state.request_log.append({"method": "POST", "path": url.path, "idempotency_key": key,
                                      "withdrawal_request_id": dict(params).get("metadata[withdrawal_request_id]"),
                                      "amount": dict(params).get("amount"), "currency": dict(params).get("currency")})
            faults = state.faults
            if faults.fail_next:  # refused before executing: nothing is stored
                status = faults.fail_next.pop(0)
                state.stats[f"injected {status}"] += 1
                kind = {429: "rate_limit_error", 401: "invalid_request_error", 403: "invalid_request_error",
                        402: "card_error"}.get(status, "api_error")
                return self._send(*_error(status, kind, f"Injected {status}", "rate_limit" if status == 429 else None))
            if key is not None:
                if len(key) > 255:
                    return self._send(*_error(400, "invalid_request_error", "Idempotency key is too long",
                                              param="Idempotency-Key"))
                if key in state.in_flight:
                    return self._send(*_error(409, "idempotency_error",
                                              "There is currently another in-progress request using this "
                                              "Idempotent Key (that probably means you submitted twice).",
                                              "idempotency_key_in_use"))
                stored = state.keys.get(key)
                if stored is not None:
                    if stored.fingerprint != _fingerprint(params):
                        return self._send(*_error(400, "idempotency_error",
                                                  "Keys for idempotent requests can only be used with the same "
                                                  "parameters they were first used with."))
                    state.stats["idempotent_replays"] += 1
                    return self._send(stored.status, stored.body)
                state.in_flight.add(key)
            hold_key = faults.in_flight_seconds
        if key is not None and hold_key:
            time.sleep(hold_key)  # the key is in flight: a concurrent request with it gets a 409
        with state.lock:
            faults = state.faults
            status, body = create_payout(state, params)
            after_effect = None
            if status == 200:
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
            if key is not None:
                # Refused by validation: nothing stored, a retry executes afresh (Stripe's rule).
                if status == 200 or after_effect == "error" or status >= 500:
                    state.keys[key] = Stored(_fingerprint(params), status, body)
                state.in_flight.discard(key)
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
            if path == "/_admin/payouts":  # with what each is worth by Stripe's own currency rules
                return self._send(200, [{**{k: v for k, v in p.items() if not k.startswith("_")},
                                         "major_amount": major_amount(p["amount"], p["currency"])}
                                        for p in (state.payouts[i] for i in state.order)])
            if path == "/_admin/requests":
                return self._send(200, state.request_log)
            if path == "/_admin/stats":
                return self._send(200, {"stats": dict(state.stats), "available": dict(state.available)})
        return self._send(404, {"error": {"message": f"no admin route {path}"}})

    def _admin_post(self, path: str, raw: bytes) -> None:
        state = self.state
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "admin bodies are JSON"}})
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
            if path == "/_admin/balance":
                state.available.update({c.lower(): int(v) for c, v in body.items()})
                return self._send(200, dict(state.available))
            if path == "/_admin/restricted_keys":  # keys that may read but not create payouts (403)
                state.restricted_keys = {str(k) for k in body.get("keys", [])}
                return self._send(200, {"ok": True})
            if path == "/_admin/forget_keys":  # Stripe's 24 h key window has passed
                state.keys.clear()
                return self._send(200, {"ok": True})
            if path.startswith("/_admin/payouts/"):
                payout = state.payouts.get(path.rsplit("/", 1)[1])
                if payout is None:
                    return self._send(404, {"error": {"message": "no such payout"}})
                status = body.get("status")
                if status not in PAYOUT_STATUSES:
                    return self._send(400, {"error": {"message": f"status must be one of {PAYOUT_STATUSES}"}})
                if status in ("failed", "canceled") and payout["status"] not in ("failed", "canceled"):
                    state.available[payout["currency"]] += payout["amount"]  # the money comes back
                payout.update(status=status, failure_code=body.get("failure_code"),
                              failure_message=body.get("failure_message"), _reads=-1 if status != "paid" else 0)
                state.save()
                return self._send(200, {k: v for k, v in payout.items() if not k.startswith("_")})
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
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
