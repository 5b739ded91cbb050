"""Evenly spaced HTTP requests to Stripe: one task never sends more than ``calls_per_second``.

Stripe limits requests per second per account (25 in test mode, 100 live) and answers the excess
with 429s. A task in the ``stripe_api`` pool paced at the account's limit divided by the pool's
slots keeps the deployment within it, so a backlog of payouts is worked at the limit rather than
in bursts of refusals; the 429s that still come (another client, Stripe's own bursts) are retried
by :func:`~investment_jobs.stripe.calls._rate_limited`.

Hand-written rather than a limiter library: what is needed is spacing within one process (no
bursts, no shared backend), which is a few lines; the bucket libraries allow a burst of the whole
rate at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from stripe import RequestsClient


class Pacer:
    """Hands out send times at least ``1 / per_second`` apart, sleeping until each one."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,  # float-ok: a rate
                 sleep: Callable[[float], None] = time.sleep) -> None:  # float-ok: seconds
        if per_second <= 0:
            raise ValueError("a pace needs a positive number of calls per second")
        self.interval = 1 / per_second
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")  # float-ok: monotonic seconds
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            send_at = max(now, self._next)
            self._next = send_at + self.interval
        if send_at > now:
            self._sleep(send_at - now)


class PacedRequestsClient(RequestsClient):
    """stripe-python's requests client, each request (a network retry too) sent at the pacer's time."""

    def __init__(self, pacer: Pacer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pacer = pacer

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        self.pacer.wait()
        return super().request(method, url, headers, post_data)
