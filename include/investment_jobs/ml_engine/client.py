"""Client of the ML engine's HTTP API (contracts.md), on Airflow's HttpHook.

Amounts are parsed from the JSON text into Decimal. 429, 5xx and connection errors are transient:
retried with exponential backoff (tenacity), then raised for Airflow's task retries. Other 4xx are
permanent. Bulk listings are paged until ``next_cursor`` is null, one page in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from investment_jobs.config import ML_ENGINE_CONN_ID, HttpRetryPolicy, ml_engine_retry_policy
from investment_jobs.ml_engine.validation import ListingPage
from investment_jobs.money import loads_exact

if TYPE_CHECKING:
    import requests


class EngineError(Exception):
    """The engine answered in a way the job cannot use."""


class TransientEngineError(EngineError):
    """429, 5xx or a connection problem: worth retrying."""


class PermanentEngineError(EngineError):
    """Another 4xx, or a body that is not the documented shape: retrying will not help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# The listing's pages typed; the agent data's numbers as exact as loads_exact reads them.
LISTING_PAGE_DECODER = msgspec.json.Decoder(ListingPage, float_hook=Decimal)
PAGE_SLACK = 10  # pages beyond a full listing's: an engine may send shorter pages than asked for


def page_limit(accounts: int, page_size: int) -> int:
    """The most pages a bulk listing may take: twice what ``accounts`` need at full pages, plus
    PAGE_SLACK (``ML_ENGINE_MAX_PAGES`` overrides it). More means the engine's cursor does not end."""
    full = -(-max(accounts, 1) // max(page_size, 1))
    return 2 * full + PAGE_SLACK


class MLEngineClient:
    def __init__(self, conn_id: str = ML_ENGINE_CONN_ID, policy: HttpRetryPolicy | None = None) -> None:
        self.conn_id = conn_id
        self.policy = policy or ml_engine_retry_policy()
        self._session: requests.Session | None = None
        self._base_url = ""

    def _session_and_base(self) -> tuple[requests.Session, str]:
        if self._session is None:
            from airflow.providers.http.hooks.http import HttpHook

            hook = HttpHook(method="GET", http_conn_id=self.conn_id)
            self._session = hook.get_conn()
            self._base_url = hook.base_url.rstrip("/")
        return self._session, self._base_url

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> MLEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, params: dict | None = None,
                 json_body: dict | None = None, typed: msgspec.json.Decoder | None = None) -> Any:
        """The decoded body; with ``typed``, the body as that decoder's type where it decodes so,
        else as plain exact JSON (:func:`~investment_jobs.money.loads_exact`)."""
        import requests

        session, base = self._session_and_base()
        url = f"{base}{path}"

        def once() -> Any:
            try:
                response = session.request(method, url, params=params, json=json_body,
                                           timeout=self.policy.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientEngineError(f"{method} {path}: {type(exc).__name__}") from None
            status = response.status_code
            if status == 429 or status >= 500:
                raise TransientEngineError(f"{method} {path}: HTTP {status}")
            if status >= 400:
                raise PermanentEngineError(f"{method} {path}: HTTP {status}: {response.text[:200]}", status)
            if not response.content:
                return None
            if typed is not None:
                try:
                    return typed.decode(response.content)
                except msgspec.MsgspecError:  # an item out of the ordinary: plain JSON, every item checked
                    pass
            try:
                return loads_exact(response.content)
            except (ValueError, RecursionError) as exc:
                raise PermanentEngineError(f"{method} {path}: body is not JSON ({str(exc)[:200]})") from None

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=wait_exponential(multiplier=self.policy.initial_wait, max=self.policy.max_wait),
            retry=retry_if_exception_type(TransientEngineError),
            reraise=True,
        )
        return retrying(once)

    def iter_daily_performance(self, business_date: date, limit: int, max_pages: int | None = None,
                               extra: dict[str, str] | None = None) -> Iterator[list[Any]]:
        """Yield the bulk listing of one date, page by page; ``extra`` parameters go with every
        page's request (a shard's account range). A page whose items all have contracts.md's JSON
        types comes as :class:`~investment_jobs.ml_engine.validation.EngineItem` structs (decoded
        without a dict per item), any other page as plain JSON objects (Decimal amounts);
        :func:`~investment_jobs.ml_engine.validation.validate_item` takes either.

        The listing ends when ``next_cursor`` is null. A cursor seen before (a repeat or a cycle)
        or more than ``max_pages`` pages is the engine's fault, not an end: it raises
        :class:`PermanentEngineError`, so the caller writes nothing for the date.

        While the caller works on a page, the next one is already being fetched (one request ahead,
        on one thread: the engine's latency and the transfer overlap the caller's validation); at
        most two pages are in memory. An error of the next page is raised when the caller asks for it.
        """
        from concurrent.futures import ThreadPoolExecutor

        def fetch(cursor: str | None) -> Any:
            params: dict[str, Any] = {"date": business_date.isoformat(), "limit": limit, **(extra or {})}
            if cursor:
                params["cursor"] = cursor
            body = self._request("GET", "/api/v1/performance/daily", params=params, typed=LISTING_PAGE_DECODER)
            if type(body) is ListingPage:
                return {"items": body.items, "next_cursor": body.next_cursor}
            return body

        self._session_and_base()  # made here: the hook reads Airflow's connection on the task's thread
        seen: set[str] = set()
        pages = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml-engine-page") as ahead:
            body = fetch(None)
            while True:
                if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                    raise PermanentEngineError("bulk listing: expected {'items': [...], 'next_cursor': ...}")
                pages += 1
                cursor = _next_cursor(body, seen, pages, business_date, limit, max_pages)
                following = ahead.submit(fetch, cursor) if cursor is not None else None
                try:
                    yield body["items"]
                except GeneratorExit:
                    if following is not None:
                        following.cancel()
                    raise
                if following is None:
                    return
                body = following.result()

    def agents_performance(self, business_date: date) -> list[Any]:
        body = self._request("GET", "/api/v1/agents/performance", params={"date": business_date.isoformat()})
        if not isinstance(body, list):
            raise PermanentEngineError("agents performance: expected a JSON list")
        return body

    def notify_withdrawal(self, payload: dict[str, Any]) -> None:
        self._request("POST", "/api/v1/withdrawals/notifications", json_body=payload)


def _next_cursor(body: dict, seen: set[str], pages: int, business_date: date, limit: int,
                 max_pages: int | None) -> str | None:
    """The listing's next cursor (None at its end), recorded in ``seen``; a cursor that is not one,
    repeats, or runs past ``max_pages`` is the engine's fault: :class:`PermanentEngineError`."""
    cursor = body.get("next_cursor")
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not cursor:
        raise PermanentEngineError(f"bulk listing: bad next_cursor {str(cursor)[:80]!r}")
    if cursor in seen:
        raise PermanentEngineError(
            f"bulk listing for {business_date}: next_cursor {cursor[:80]!r} came back after {pages} "
            "page(s) (the engine's paging repeats or cycles); nothing was written for the date")
    if max_pages is not None and pages >= max_pages:
        raise PermanentEngineError(
            f"bulk listing for {business_date}: still not finished after {pages} pages of up to {limit} "
            f"items, more than the active accounts can need (ML_ENGINE_MAX_PAGES sets the limit); "
            "nothing was written for the date")
    seen.add(cursor)
    return cursor
