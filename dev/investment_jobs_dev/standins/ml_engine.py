"""The ML engine stand-in: a real HTTP server that serves contracts.md's ML engine API.

Stateful and deterministic (see data.py). Admin endpoints under ``/_admin`` register accounts and
switch faults on: bursts of given status codes, a random share of 429/500, latency, an engine that
is down, and malformed items. Run it with ``python -m investment_jobs_dev.standins.ml_engine``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from investment_jobs_dev.standins.ml_engine_data import EngineAccount, agent_items, daily_item

PAGING_FAULTS = ("", "repeat", "cycle", "endless")
MALFORMED_KINDS = ("missing_field", "non_numeric", "nan", "infinity", "negative_closing", "return_mismatch")


@dataclass
class Faults:
    fail_next: list[int] = field(default_factory=list)  # status codes for the next API calls
    error_rates: dict[int, float] = field(default_factory=dict)  # float-ok: probabilities
    latency_ms: int = 0
    down: bool = False
    malformed: dict[str, str] = field(default_factory=dict)  # account_id -> kind
    unknown_accounts: int = 0
    duplicate_accounts: list[str] = field(default_factory=list)
    malformed_agents: int = 0  # the first N agent items get a non-numeric pnl
    # The listing's paging breaks: "repeat" (the last page names itself as next), "cycle" (the last
    # page points back to the first), "endless" (the last page comes again and again, each time
    # with a new cursor).
    paging: str = ""
    raw_items: list[str] = field(default_factory=list)  # JSON texts appended to each date's listing
    # The engine restates days: account id -> an amount added to its daily return and closing balance.
    restate: dict[str, str] = field(default_factory=dict)
    # An engine without the listing's account range (an addition to contracts.md): every range
    # gets the whole listing.
    ignore_account_range: bool = False

    @classmethod
    def from_json(cls, body: dict) -> Faults:
        """The switches, as the admin endpoint, --faults and ML_STANDIN_FAULTS take them."""
        faults = cls(
            fail_next=[int(s) for s in body.get("fail_next", [])],
            error_rates={int(k): float(v) for k, v in body.get("error_rates", {}).items()},  # float-ok
            latency_ms=int(body.get("latency_ms", 0)),
            down=bool(body.get("down", False)),
            malformed=dict(body.get("malformed", {})),
            unknown_accounts=int(body.get("unknown_accounts", 0)),
            duplicate_accounts=list(body.get("duplicate_accounts", [])),
            malformed_agents=int(body.get("malformed_agents", 0)),
            paging=str(body.get("paging", "")),
            raw_items=[str(t) for t in body.get("raw_items", [])],
            restate={str(k): str(v) for k, v in body.get("restate", {}).items()},
            ignore_account_range=bool(body.get("ignore_account_range", False)),
        )
        if faults.paging not in PAGING_FAULTS:
            raise ValueError(f"unknown paging fault {faults.paging!r}; one of {PAGING_FAULTS}")
        for kind in faults.malformed.values():
            if kind not in MALFORMED_KINDS:
                raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")
        return faults


class EngineState:
    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.lock = threading.Lock()
        self.accounts: dict[str, EngineAccount] = {}
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.notifications: dict[str, dict] = {}
        self._pages: dict[tuple[str, int], list[bytes]] = {}

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.faults = Faults()
            self.rng = random.Random(self.seed)
            self.stats.clear()
            self.notifications.clear()
            self._pages.clear()

    def listed(self, day: date) -> list[EngineAccount]:
        return [a for a in self.accounts.values() if a.listed_on(day)]

    def items_for(self, day: date) -> list[dict]:
        faults = self.faults
        items = []
        for account in sorted(self.listed(day), key=lambda a: a.account_id):
            item = daily_item(self.seed, account, day)
            kind = faults.malformed.get(account.account_id)
            if kind:
                item = _malform(item, kind)
            if account.account_id in faults.restate:
                extra = Decimal(faults.restate[account.account_id])
                item["daily_return"] = str(Decimal(item["daily_return"]) + extra)
                item["closing_balance"] = str(Decimal(item["closing_balance"]) + extra)
            items.append(item)
            if account.account_id in faults.duplicate_accounts:
                items.append(dict(item))
        for k in range(faults.unknown_accounts):
            ghost = EngineAccount(str(uuid.UUID(int=self.seed * 1000 + k + 1)), date(2000, 1, 1), None,
                                  Decimal(1000))
            items.append(daily_item(self.seed, ghost, day))
        return items

    def pages(self, day: date, limit: int, account_from: str | None = None, account_to: str | None = None
              ) -> list[bytes]:
        """Page bodies for one date (of one account range), rendered once and cached (the benchmark
        warms them)."""
        key = (day.isoformat(), limit, account_from, account_to)
        with self.lock:
            cached = self._pages.get(key)
        if cached is not None:
            return cached
        items = self.items_for(day)
        bounds = _bounds(account_from, account_to)
        if bounds != (None, None):
            items = [i for i in items if _in_range(i.get("account_id"), bounds)]
        chunks = [items[i:i + limit] for i in range(0, len(items), limit)] or [[]]
        bodies = []
        for n, chunk in enumerate(chunks):
            last = n + 1 == len(chunks)
            next_cursor = None if last else _cursor(n + 1)
            if last and self.faults.paging == "repeat":
                next_cursor = _cursor(n)
            elif last and self.faults.paging == "cycle":
                next_cursor = _cursor(0)
            elif last and self.faults.paging == "endless":
                next_cursor = ENDLESS
            raw = [t for t in self.faults.raw_items if _in_range(_raw_account(t), bounds)]
            texts = [json.dumps(item) for item in chunk] + (raw if last else [])
            bodies.append(('{"items": [' + ", ".join(texts) + '], "next_cursor": ' + json.dumps(next_cursor)
                           + "}").encode())
        with self.lock:
            self._pages[key] = bodies
        return bodies


def _bounds(account_from: str | None, account_to: str | None) -> tuple[int | None, int | None]:
    """The listing's account range (an addition to contracts.md) as 128-bit values, parsed once."""
    return (None if account_from is None else uuid.UUID(account_from).int,
            None if account_to is None else uuid.UUID(account_to).int)


def _in_range(account_id: object, bounds: tuple[int | None, int | None]) -> bool:
    """[account_from, account_to) by the ids' 128-bit value; an id that is not a UUID is in the
    range that has no account_from."""
    lower, upper = bounds
    try:
        value = uuid.UUID(account_id).int if isinstance(account_id, str) else None
    except ValueError:
        value = None
    if value is None:
        return lower is None
    return (lower is None or lower <= value) and (upper is None or value < upper)


def _raw_account(text: str) -> object:
    try:
        item = json.loads(text)
    except ValueError:
        return None
    return item.get("account_id") if isinstance(item, dict) else None


def _malform(item: dict, kind: str) -> dict:
    item = dict(item)
    if kind == "missing_field":
        del item["closing_balance"]
    elif kind == "non_numeric":
        item["opening_balance"] = "12,5O"
    elif kind == "nan":
        item["daily_return"] = "NaN"
    elif kind == "infinity":
        item["daily_return_percentage"] = "Infinity"
    elif kind == "negative_closing":
        item["closing_balance"] = str(-abs(Decimal(item["closing_balance"])) - 1)
        item["daily_return"] = str(Decimal(item["closing_balance"]) - Decimal(item["opening_balance"]))
    elif kind == "return_mismatch":
        item["daily_return"] = str(Decimal(item["daily_return"]) + Decimal("5.00"))
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")
    return item


ENDLESS = "endless"  # placeholder the endless paging fault replaces with a new cursor per request


def _cursor(page: int, serial: int = 0) -> str:
    return base64.urlsafe_b64encode(f"page:{page}:{serial}".encode()).decode()


def _page_of(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().split(":")[1])
    except Exception as exc:
        raise ValueError("bad cursor") from exc


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def create_app(state: EngineState | None = None) -> FastAPI:
    state = state or EngineState()
    app = FastAPI(title="ML engine stand-in")
    app.state.engine = state

    @app.middleware("http")
    async def inject_faults(request: Request, call_next):  # noqa: ANN001, ANN202
        if request.url.path.startswith("/_admin"):
            return await call_next(request)
        faults = state.faults
        status = None
        with state.lock:
            if faults.fail_next:
                status = faults.fail_next.pop(0)
            elif faults.down:
                status = 503
            else:
                for code, rate in faults.error_rates.items():
                    if state.rng.random() < rate:
                        status = code
                        break
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if status is not None:
            state.stats[f"{request.url.path}:{status}"] += 1
            headers = {"Retry-After": "0"} if status == 429 else {}
            return JSONResponse({"detail": f"injected {status}"}, status_code=status, headers=headers)
        response = await call_next(request)
        state.stats[f"{request.url.path}:{response.status_code}"] += 1
        return response

    @app.get("/api/v1/performance/daily")
    def daily(request: Request, limit: int = 1000, cursor: str | None = None, account_from: str | None = None,
              account_to: str | None = None) -> Response:
        day_text = request.query_params.get("date")
        try:
            day = date.fromisoformat(day_text or "")
            page = _page_of(cursor)
            for bound in (account_from, account_to):
                if bound is not None:
                    uuid.UUID(bound)
        except ValueError as exc:
            return _error(400, str(exc))
        if not 1 <= limit <= 50_000:
            return _error(400, "limit must be between 1 and 50000")
        if state.faults.ignore_account_range:
            account_from = account_to = None
        bodies = state.pages(day, limit, account_from, account_to)
        if page >= len(bodies):
            return _error(400, "cursor past the end")
        body = bodies[page]
        if state.faults.paging == "endless" and page + 1 == len(bodies):
            with state.lock:
                state.stats["endless_pages"] += 1
                serial = state.stats["endless_pages"]
            body = body.replace(json.dumps(ENDLESS).encode(), json.dumps(_cursor(page, serial)).encode())
        return Response(body, media_type="application/json")

    @app.get("/api/v1/accounts/{account_id}/performance")
    def account_performance(account_id: str, start_date: str, end_date: str) -> Response:
        account = state.accounts.get(account_id)
        if account is None:
            return _error(404, f"unknown account {account_id}")
        start, end = date.fromisoformat(start_date), date.fromisoformat(end_date)
        items = []
        for ordinal in range(start.toordinal(), end.toordinal() + 1):
            day = date.fromordinal(ordinal)
            if account.listed_on(day):
                item = daily_item(state.seed, account, day)
                item.pop("account_id")
                items.append(item)
        return Response(json.dumps(items).encode(), media_type="application/json")

    @app.post("/api/v1/withdrawals/notifications", status_code=202)
    async def notify(request: Request) -> dict:
        body = await request.json()
        key = str(body.get("withdrawal_request_id", ""))
        if not key:
            return _error(400, "withdrawal_request_id is required")
        with state.lock:
            state.notifications.setdefault(key, body)  # a repeat is the same notification
        return {"status": "accepted"}

    @app.get("/api/v1/agents/performance")
    def agents(request: Request) -> Response:
        day = date.fromisoformat(request.query_params.get("date", ""))
        products = sorted({a.product_id for a in state.accounts.values() if a.product_id})
        items = agent_items(state.seed, products, day)
        for item in items[:state.faults.malformed_agents]:
            item["pnl"] = "n/a"
        return Response(json.dumps(items).encode(),
                        media_type="application/json")

    # --- admin -----------------------------------------------------------------------------
    @app.post("/_admin/reset")
    def reset() -> dict:
        state.reset()
        return {"ok": True}

    @app.post("/_admin/accounts")
    async def add_accounts(request: Request) -> dict:
        rows = await request.json()
        with state.lock:
            for row in rows:
                account = EngineAccount(
                    account_id=str(row["account_id"]),
                    opened_on=date.fromisoformat(row["opened_on"]),
                    closed_on=date.fromisoformat(row["closed_on"]) if row.get("closed_on") else None,
                    initial_balance=Decimal(str(row["initial_balance"])),
                    product_id=str(row.get("product_id") or ""),
                    trading=bool(row.get("trading", True)),
                )
                state.accounts[account.account_id] = account
            state._pages.clear()
        return {"accounts": len(state.accounts)}

    @app.post("/_admin/faults")
    async def set_faults(request: Request) -> dict:
        try:
            faults = Faults.from_json(await request.json())
        except ValueError as exc:
            return _error(400, str(exc))
        with state.lock:
            state.faults = faults
            state._pages.clear()
        return {"ok": True}

    @app.post("/_admin/warm")
    def warm(request: Request) -> dict:
        day = date.fromisoformat(request.query_params["date"])
        limit = int(request.query_params.get("limit", "1000"))
        shards = int(request.query_params.get("shards", "1"))  # the pages of each range SHARDS asks for
        if shards == 1:
            return {"pages": len(state.pages(day, limit))}
        from investment_jobs.ml_engine.shards import account_ranges

        return {"pages": sum(len(state.pages(day, limit, r.lower, r.upper)) for r in account_ranges(shards))}

    @app.get("/_admin/stats")
    def stats() -> dict[str, Any]:
        return {"requests": dict(state.stats), "notifications": list(state.notifications.values()),
                "accounts": len(state.accounts)}

    @app.get("/_admin/health")
    def health() -> dict:
        return {"ok": True}

    return app


def load_accounts_from_db(dsn: str) -> list[dict]:
    """The engine's view of the book: every account that trades (suspended ones do not)."""
    import psycopg

    from investment_jobs_dev.standins.ml_engine_data import accounts_in

    with psycopg.connect(dsn) as conn:
        accounts = accounts_in(conn)
    return [{"account_id": a.account_id, "opened_on": a.opened_on.isoformat(),
             "closed_on": a.closed_on.isoformat() if a.closed_on else None, "initial_balance": str(a.initial_balance),
             "product_id": a.product_id, "trading": a.trading} for a in accounts]


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--accounts-from-dsn", default=os.environ.get("ML_STANDIN_ACCOUNTS_DSN"),
                        help="register the accounts of this investment database "
                             "(default: env ML_STANDIN_ACCOUNTS_DSN, which keeps a password off `ps`)")
    parser.add_argument("--faults", default=os.environ.get("ML_STANDIN_FAULTS", ""),
                        help='fault switches as JSON, e.g. {"error_rates": {"429": 0.1}} '
                             "(default: env ML_STANDIN_FAULTS); change them later with POST /_admin/faults")
    args = parser.parse_args(argv)
    state = EngineState(seed=args.seed)
    if args.faults:
        state.faults = Faults.from_json(json.loads(args.faults))
    app = create_app(state)
    if args.accounts_from_dsn:
        for row in load_accounts_from_db(args.accounts_from_dsn):
            state.accounts[row["account_id"]] = EngineAccount(
                row["account_id"], date.fromisoformat(row["opened_on"]),
                date.fromisoformat(row["closed_on"]) if row["closed_on"] else None,
                Decimal(row["initial_balance"]), row["product_id"], row["trading"])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
