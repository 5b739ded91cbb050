"""Clients of the stand-ins' admin routes (``/_admin/…``), for the tests and the benchmark."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass
class StandInAdmin:
    url: str

    def call(self, method: str, path: str, body: object | None = None, timeout: float = 600) -> Any:  # float-ok
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def reset(self) -> None:
        self.call("POST", "/_admin/reset", {})

    def faults(self, **faults: object) -> None:
        self.call("POST", "/_admin/faults", faults)

    def stats(self) -> dict:
        return self.call("GET", "/_admin/stats")


class EngineAdmin(StandInAdmin):
    def register(self, accounts: list[dict]) -> None:
        self.call("POST", "/_admin/accounts", accounts)

    def warm(self, day: date, limit: int, shards: int = 1) -> None:
        """Render a date's pages (of each of ``shards`` account ranges) before any timing starts."""
        self.call("POST", f"/_admin/warm?date={day.isoformat()}&limit={limit}&shards={shards}")


class StripeAdmin(StandInAdmin):
    def payouts(self) -> list[dict]:
        """Every payout in creation order, with what it is worth by Stripe's own currency rules."""
        return self.call("GET", "/_admin/payouts")

    def requests(self) -> list[dict]:
        """Every authorised payout creation request, as it arrived (idempotency key, metadata)."""
        return self.call("GET", "/_admin/requests")

    def set_payout(self, payout_id: str, **fields: object) -> dict:
        return self.call("POST", f"/_admin/payouts/{payout_id}", fields)

    def balance(self, **per_currency: int) -> None:
        self.call("POST", "/_admin/balance", per_currency)

    def reset_traffic(self) -> None:
        self.call("POST", "/_admin/traffic/reset", {})

    def forget_keys(self) -> None:
        self.call("POST", "/_admin/forget_keys", {})

    def restricted_keys(self, *keys: str) -> None:
        """Keys that may read but not create payouts (Stripe answers 403)."""
        self.call("POST", "/_admin/restricted_keys", {"keys": list(keys)})

    def connected_accounts(self, *accounts: dict) -> list[dict]:
        """Add connected accounts (``{"id": "acct_…", "external_accounts": ["ba_…"]}``); list them all."""
        if accounts:
            return self.call("POST", "/_admin/connected_accounts", list(accounts))
        return self.call("GET", "/_admin/connected_accounts")

    def transfers(self) -> list[dict]:
        return self.call("GET", "/_admin/transfers")

    def reversals(self) -> list[dict]:
        return self.call("GET", "/_admin/reversals")

    def balance_transactions(self) -> list[dict]:
        return self.call("GET", "/_admin/balance_transactions")

    def advance(self) -> None:
        """The banks answer: every payout on its way turns paid (and says so by webhook)."""
        self.call("POST", "/_admin/advance", {})

    def webhooks(self, url: str | None, secret: str = "", **faults: object) -> None:
        """Where events are delivered, signed with ``secret``, and how deliveries misbehave."""
        self.call("POST", "/_admin/webhooks", {"url": url, "secret": secret, **faults})

    def flush_webhooks(self) -> list[dict]:
        """Deliver every queued event now; the attempts made."""
        return self.call("POST", "/_admin/webhooks/flush", {})

    def events(self) -> dict:
        return self.call("GET", "/_admin/events")
