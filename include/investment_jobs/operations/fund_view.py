"""The fund at a glance: ``/fund/`` on the Airflow API server, in the UI's navigation (a plugin).

A FastAPI app (server-rendered HTML, charts drawn by plotly.js served from the installed
``plotly`` package, so nothing is fetched from a CDN) behind Airflow's own login: every route
depends on Airflow's ``get_user``, which accepts the UI session's cookie or a bearer token and
answers 401 otherwise. It shows account data, unlike ``/health/jobs``.

Sections (each a chart, the table behind it one click away, and a CSV of that table): the book,
performance, distributions, payouts, data quality, jobs, and one account. Filters: a date range,
a product, a currency. Amounts are shown in their currency's minor unit and never summed across
currencies. Every section reads the summary tables (:mod:`investment_jobs.views.summaries`).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

SECTIONS = ("book", "performance", "distributions", "payouts", "quality", "jobs", "account")
DEFAULT_DAYS = 30
MONEY_COLUMNS = {"aum", "opening_balance", "closing_balance", "daily_return", "paid", "reversed", "failed",
                 "in_flight", "net_outflow", "gross_profit", "fees", "net_profit", "amount", "balance_before",
                 "balance_after", "fee", "initial_investment", "current_balance", "total_profit_distributed",
                 "total_withdrawn", "cumulative_return"}


class BadFilter(ValueError):
    """A filter the page cannot use (answered 400 with the reason)."""


def parse_filters(start: str | None, end: str | None, product: str | None, currency: str | None,
                  latest: date | None) -> Any:
    """The page's filters from its query string; by default the last 30 stored business dates."""
    from investment_jobs.views.fund import Filters

    try:
        # An empty book has no stored date to end on: its page shows the 30 days up to today.
        last = date.fromisoformat(end) if end else (latest or datetime.now(UTC).date())  # clock-ok: a page default
        first = date.fromisoformat(start) if start else last - timedelta(days=DEFAULT_DAYS - 1)
    except ValueError as exc:
        raise BadFilter(f"dates are YYYY-MM-DD: {exc}") from None
    if first > last:
        raise BadFilter(f"the range starts ({first}) after it ends ({last})")
    if currency and (len(currency) != 3 or not currency.isalpha()):
        raise BadFilter("currency is a three-letter ISO code")
    return Filters(first, last, product or None, currency.lower() if currency else None)


def cell(value: Any, column: str, currency: str | None) -> str:
    """A table cell as a person reads it: money in its currency's minor unit, exact."""
    from investment_jobs.money import shown

    if value is None:
        return ""
    if isinstance(value, Decimal) and column in MONEY_COLUMNS and currency:
        return shown(value, currency)
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


def table(frame: Any, currency_column: str = "currency", currency: str | None = None) -> dict[str, Any]:
    """A frame as the template's table: headers and formatted rows."""
    rows = []
    for record in frame.to_dict("records"):
        cur = record.get(currency_column) or currency
        rows.append([cell(record[c], c, cur) for c in frame.columns])
    return {"columns": list(frame.columns), "rows": rows}


def _text(values: Any) -> list[str]:
    """Chart values as exact text (plotly.js reads numeric strings as numbers): never a float."""
    return [str(v) if isinstance(v, Decimal) else v for v in values]


def _dates(values: Any) -> list[str]:
    return [v.isoformat() if hasattr(v, "isoformat") else str(v) for v in values]


def figure(traces: list[dict[str, Any]], title: str, **layout: Any) -> str:
    """A plotly.js figure as JSON. Dates and months are categories: one label per business date,
    never the hours in between."""
    return json.dumps({"data": traces, "layout": {"title": {"text": title}, "margin": {"t": 40, "r": 10, "l": 60,
                                                                                          "b": 40},
                                                  "height": 320, "legend": {"orientation": "h"},
                                                  "xaxis": {"type": "category"}, **layout}})


def per_currency(frame: Any) -> list[tuple[str, Any]]:
    return [(str(c), rows) for c, rows in frame.groupby("currency", sort=True)] if len(frame) else []


def sections(conn: Any, f: Any, day: date | None, account_id: str | None) -> dict[str, Any]:
    """Every section's charts and tables, from the summary tables."""
    from investment_jobs.views import fund

    out: dict[str, Any] = {}
    book = fund.book(conn, f)
    payouts = fund.payouts(conn, f)
    charts = []
    for currency, rows in per_currency(book):
        traces = [{"type": "scatter", "mode": "lines", "name": product, "x": _dates(r["date"]), "y": _text(r["aum"])}
                  for product, r in rows.groupby("product", sort=True)]
        charts.append(figure(traces, f"Assets under management, {currency}", yaxis={"title": currency}))
    for currency, rows in per_currency(payouts):
        charts.append(figure([{"type": "bar", "name": "net outflow (paid − reversed)", "x": _dates(rows["date"]),
                               "y": _text(rows["net_outflow"])}], f"Net flows out through withdrawals, {currency}"))
    accounts = book.groupby(["date"], sort=True)["accounts"].sum().reset_index() if len(book) else book
    out["book"] = {"charts": charts, "table": table(book.drop(columns=["product_id"])),
                   "summary": {"accounts_on_last_day": int(accounts["accounts"].iloc[-1]) if len(accounts) else 0}}

    totals, series = fund.performance(book)
    day = day or (f.end if len(book) == 0 else max(book["date"]))
    histogram, extremes = fund.return_spread(conn, f, day)
    out["performance"] = {
        "charts": [
            figure([{"type": "bar", "x": [f"{p} ({c})" for p, c in zip(totals["product"], totals["currency"],
                                                                        strict=True)],
                     "y": _text(totals["twr_pct"])}], f"Time-weighted return, {f.start} … {f.end} (%)"),
            figure([{"type": "scatter", "mode": "lines", "name": product, "x": _dates(r["date"]),
                     "y": _text(r["cumulative_twr_pct"])} for product, r in series.groupby("product", sort=True)],
                   "Cumulative time-weighted return (%)"),
            figure([{"type": "bar", "x": list(histogram["bucket"]), "y": list(histogram["accounts"])}],
                   f"Spread of the accounts' daily returns on {day} (accounts per bucket)"),
        ],
        "table": table(totals.drop(columns=["product_id"])), "extremes": table(extremes), "day": day.isoformat(),
    }

    distributions = fund.distributions(conn, f)
    charts = []
    for currency, rows in per_currency(distributions):
        charts.append(figure([{"type": "bar", "name": name, "x": list(rows["period"]), "y": _text(rows[column])}
                              for name, column in (("gross profit", "gross_profit"), ("fees", "fees"),
                                                   ("net profit", "net_profit"))],
                             f"Distributions per month, {currency}", barmode="group"))
    out["distributions"] = {"charts": charts, "table": table(distributions)}

    charts = []
    for currency, rows in per_currency(payouts):
        charts.append(figure([{"type": "bar", "name": name, "x": _dates(rows["date"]), "y": _text(rows[column])}
                              for name, column in (("paid", "paid"), ("failed", "failed"), ("reversed", "reversed"),
                                                   ("in flight", "in_flight"))],
                             f"Withdrawals per day, {currency}", barmode="stack"))
    waiting = fund.waiting(conn, f)
    out["payouts"] = {"charts": charts, "table": table(payouts), "waiting": table(waiting.drop(columns=["run_id"])),
                      "waiting_count": len(waiting)}

    quality, held = fund.data_quality(conn, f)
    out["quality"] = {
        "charts": [figure([{"type": "bar", "name": name, "x": list(quality["date"]), "y": list(quality[column])}
                           for name, column in (("missing", "missing"), ("rejected", "rejected"),
                                                ("reconciliation differences", "reconciliation_differences"))],
                          "Data quality per business date", barmode="group")] if len(quality) else [],
        "table": table(quality), "held": table(held)}

    out["account"] = account_section(conn, f, account_id)
    return out


def account_section(conn: Any, f: Any, account_id: str | None) -> dict[str, Any] | None:
    from investment_jobs.views import fund

    if not account_id:
        return None
    found = fund.account(conn, account_id.strip(), f)
    if found is None:
        return {"searched": account_id, "found": False}
    currency = found["facts"]["currency"]
    days = found["days"]
    return {
        "searched": account_id, "found": True,
        "facts": [(k, cell(v, k, currency)) for k, v in found["facts"].items()],
        "charts": [figure([{"type": "scatter", "mode": "lines", "name": "closing balance",
                            "x": _dates(days["date"]), "y": _text(days["closing_balance"])}],
                          f"Closing balance, {currency}")] if len(days) else [],
        **{name: table(found[name], currency=currency) for name in ("days", "distributions", "withdrawals",
                                                                   "transactions")},
    }


def jobs_section() -> dict[str, Any]:
    """Each job's last completed date or period, lag and status: the ``/health/jobs`` rule."""
    import pendulum

    from investment_jobs import config
    from investment_jobs.operations.health import grace_period, report, snapshot

    now = pendulum.now("UTC")  # clock-ok: lag is measured against the present
    _, body = report(snapshot(now), now, grace_period(), config.cron_timezone())
    rows = [[e["dag_id"], e["status"], e.get("last_completed") or "", "" if e.get("lag_seconds") is None else
             str(timedelta(seconds=e["lag_seconds"])), "paused" if e["paused"] else "on"]
            for e in body["jobs"].values()]
    return {"table": {"columns": ["job", "status", "last completed", "lag", "schedule"], "rows": rows},
            "status": body["status"]}


def csv_frame(conn: Any, section: str, f: Any, day: date | None, account_id: str | None) -> Any:
    """The table behind a section, as a frame (what its CSV download holds)."""
    from investment_jobs.views import fund

    if section == "book":
        return fund.book(conn, f)
    if section == "performance":
        return fund.performance(fund.book(conn, f))[0]
    if section == "spread":
        return fund.return_spread(conn, f, day or f.end)[0]
    if section == "distributions":
        return fund.distributions(conn, f)
    if section == "payouts":
        return fund.payouts(conn, f)
    if section == "waiting":
        return fund.waiting(conn, f)
    if section == "quality":
        return fund.data_quality(conn, f)[0]
    if section == "held":
        return fund.data_quality(conn, f)[1]
    if section.startswith("account-") and account_id:
        found = fund.account(conn, account_id, f)
        part = section.removeprefix("account-")
        if found is not None and part in ("days", "distributions", "withdrawals", "transactions"):
            return found[part]
    raise BadFilter(f"no table {section!r}")


def create_app():  # noqa: ANN201 - a FastAPI app
    """The app the plugin mounts at ``/fund``: ``GET /fund/`` (the page), ``/fund/csv/<table>``,
    ``/fund/static/plotly.min.js``; every route needs an Airflow login (:func:`login_required`)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, PlainTextResponse, Response

    app = FastAPI(title="investment-jobs fund view", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(login_required)

    def load(start: str | None, end: str | None, product: str | None, currency: str | None) -> tuple[Any, Any]:
        from investment_jobs.db.connect import connect_on_server
        from investment_jobs.views import fund

        conn = connect_on_server()
        return conn, parse_filters(start, end, product, currency, fund.latest_business_date(conn))

    @app.get("/", response_class=HTMLResponse)
    def page(start: str | None = None, end: str | None = None, product: str | None = None,
             currency: str | None = None, day: str | None = None, account: str | None = None) -> Response:
        from investment_jobs.operations.fund_page import render
        from investment_jobs.views import fund

        try:
            conn, f = load(start, end, product, currency)
        except BadFilter as exc:
            return PlainTextResponse(str(exc), status_code=400)
        try:
            with conn:
                chosen = date.fromisoformat(day) if day else None
                data = sections(conn, f, chosen, account)
                products = fund.products(conn)
                data["jobs"] = jobs_section()
        except (BadFilter, ValueError) as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return HTMLResponse(render(data, f, products.to_dict("records"), account or ""))

    @app.get("/csv/{name}")
    def csv(name: str, start: str | None = None, end: str | None = None, product: str | None = None,
            currency: str | None = None, day: str | None = None, account: str | None = None) -> Response:
        try:
            conn, f = load(start, end, product, currency)
            with conn:
                frame = csv_frame(conn, name, f, date.fromisoformat(day) if day else None, account)
        except (BadFilter, ValueError) as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return Response(frame.to_csv(index=False), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}-{f.start}-{f.end}.csv"'})

    @app.get("/static/plotly.min.js")
    def plotly_js() -> Response:
        return Response(plotly_bundle(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    return app


async def login_required(request: Any, call_next: Any) -> Any:
    """Airflow's own check of the caller, as its ``get_user`` makes it: a bearer token, else the UI
    session's cookie, validated by the auth manager; 401 (or 403 for a forged token) otherwise.
    Imported per request, so loading the plugin in a worker or the scheduler imports none of it."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException
    from fastapi.responses import JSONResponse

    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    try:
        await resolve_user_from_token(token)
    except HTTPException as exc:
        return JSONResponse({"detail": f"{exc.detail}: log in to Airflow to see the fund view"},
                            status_code=exc.status_code)
    return await call_next(request)


_BUNDLE: bytes | None = None


def plotly_bundle() -> bytes:
    """plotly.js as the installed ``plotly`` package ships it (read once)."""
    global _BUNDLE
    if _BUNDLE is None:
        from importlib.resources import files

        _BUNDLE = (files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    return _BUNDLE
