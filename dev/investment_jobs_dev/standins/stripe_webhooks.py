"""The Stripe stand-in's webhook deliveries: events signed like Stripe's, with delivery faults.

Stripe signs each delivery with the endpoint's secret: header ``Stripe-Signature: t=<unix time>,
v1=<hex HMAC-SHA256 of "<t>.<body>">``. Deliveries are queued and sent by a background thread
(or at once by ``flush``); the switches make them arrive twice (``duplicate``), late
(``delay_seconds``), newest first (``out_of_order``), not at all for a while (``fail_next``: that
many attempts fail and stay queued, as Stripe retries), held until a flush (``hold``), or signed
with a timestamp ``timestamp_skew_seconds`` in the past (an old or replayed delivery).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe sends for ``payload`` signed at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


@dataclass
class WebhookEndpoint:
    url: str | None = None
    secret: str = ""
    hold: bool = False
    duplicate: bool = False
    out_of_order: bool = False
    delay_seconds: float = 0.0  # float-ok: seconds
    fail_next: int = 0
    timestamp_skew_seconds: int = 0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WebhookEndpoint:
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        return cls(url=body.get("url"), secret=str(body.get("secret", "")), hold=bool(body.get("hold", False)),
                   duplicate=bool(body.get("duplicate", False)), out_of_order=bool(body.get("out_of_order", False)),
                   delay_seconds=float(body.get("delay_seconds", 0.0)),  # float-ok: seconds
                   fail_next=int(body.get("fail_next", 0)),
                   timestamp_skew_seconds=int(body.get("timestamp_skew_seconds", 0)))


@dataclass
class Deliveries:
    """The queue of events not yet delivered and the log of every attempt."""

    endpoint: WebhookEndpoint = field(default_factory=WebhookEndpoint)
    pending: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    wake: threading.Condition = field(default_factory=threading.Condition)

    def enqueue(self, event: dict[str, Any]) -> None:
        if self.endpoint.url is None:
            return
        with self.wake:
            self.pending.append(event)
            self.wake.notify()

    def flush(self) -> list[dict[str, Any]]:
        """Deliver what is queued now (whatever ``hold`` says); return this flush's attempts."""
        with self.wake:
            batch, self.pending = self.pending, []
            endpoint = self.endpoint
        if endpoint.delay_seconds:
            time.sleep(endpoint.delay_seconds)
        if endpoint.out_of_order:
            batch = list(reversed(batch))
        done: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for event in batch:
            for _ in range(2 if endpoint.duplicate else 1):
                attempt = self._deliver(endpoint, event)
                done.append(attempt)
                if not attempt["delivered"]:
                    failed.append(event)
                    break
        if failed:
            with self.wake:  # Stripe retries a failed delivery later
                self.pending[:0] = failed
        return done

    def _deliver(self, endpoint: WebhookEndpoint, event: dict[str, Any]) -> dict[str, Any]:
        attempt: dict[str, Any] = {"event": event["id"], "type": event["type"], "delivered": False, "status": None}
        with self.wake:
            if endpoint.fail_next:
                endpoint.fail_next -= 1
                attempt["status"] = "injected failure"
                self.attempts.append(attempt)
                return attempt
        payload = json.dumps(event).encode()
        timestamp = int(time.time()) - endpoint.timestamp_skew_seconds  # clock-ok: Stripe signs with its clock
        request = urllib.request.Request(endpoint.url or "", data=payload, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature_header(payload, endpoint.secret, timestamp)})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                attempt["status"] = response.status
        except urllib.error.HTTPError as exc:
            attempt["status"] = exc.code
        except OSError as exc:
            attempt["status"] = f"unreachable: {type(exc).__name__}"
        attempt["delivered"] = isinstance(attempt["status"], int) and 200 <= attempt["status"] < 300
        with self.wake:
            self.attempts.append(attempt)
        return attempt

    def run_forever(self) -> None:
        """The background sender: delivers what is queued unless held, retrying failures each second."""
        while True:
            with self.wake:
                while not self.pending or self.endpoint.hold or self.endpoint.url is None:
                    self.wake.wait(timeout=1.0)
            if any(not a["delivered"] for a in self.flush()):
                time.sleep(1.0)
