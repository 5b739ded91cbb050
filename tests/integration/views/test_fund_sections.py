"""Each section of the fund view against an independent SQL aggregate of the raw rows, over a
seeded book with every currency, closed accounts, a reversed payout and a held-back month."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.integration.views.test_summaries import run_day
from tests.support.airflow_runs import run_dag
from tests.support.book import fill_days
from tests.support.withdrawals import accounts_by_currency, add_request, requests

pytestmark = pytest.mark.integration

JAN = [date(2026, 1, 1) + timedelta(days=i) for i in range(31)]


@pytest.fixture
def fund_book(book, stripe_standin, airflow_db):
    """January: five days by the daily job itself, the rest stored directly, one account missing a
    day (its month is held back), the month distributed; withdrawals paid, failed and reversed."""
    from investment_jobs.views.summaries import rebuild_all

    for day in JAN[:5]:
        run_day(day)
    fill_days(book, JAN[5], JAN[-1])
    victim = book.active_ids()[0]
    with book.connect() as conn:
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s AND date = %s", (victim, JAN[20]))
        rebuild_all(conn, "UTC")  # the days stored directly, summarised as the daily job would have
    assert str(run_dag("monthly_distribution", JAN[0]).state) == "failed"  # one account held back
    usd = accounts_by_currency(book)["usd"]
    ids = {"paid": add_request(book, usd[1], "10.00"), "returned": add_request(book, usd[2], "7.00", created_offset=1),
           "refused": add_request(book, usd[3], "3.00", destination={"bank_account_id": "nope"}, created_offset=2)}
    for currency, rows in accounts_by_currency(book).items():
        if currency != "usd":
            ids[currency] = add_request(book, rows[0], {"jpy": "300", "kwd": "0.500"}.get(currency, "2.00"))
    assert str(run_dag("withdrawal_processing", JAN[-1]).state) == "success"
    stripe_standin.set_payout(requests(book)[ids["returned"]]["payout_id"], status="failed", failure_code="no_account")
    assert str(run_dag("withdrawal_processing", JAN[-1]).state) == "success"
    return book, victim, ids


def test_every_section_equals_an_independent_aggregate(fund_book):
    from investment_jobs.views import fund

    book, victim, ids = fund_book
    today = date.today()  # clock-ok: withdrawals are processed now, their business date is today's
    f = fund.Filters(JAN[0], JAN[-1])
    with psycopg.connect(book.dsn) as conn:
        frame = fund.book(conn, f)
        raw = {(d, p): (n, c) for d, p, n, c in conn.execute(
            """SELECT date, product_id::text, count(*), sum(closing_balance) FROM investment.daily_performance
               WHERE date BETWEEN %s AND %s GROUP BY 1, 2""", (f.start, f.end)).fetchall()}
        assert {(r["date"], r["product_id"]): (r["accounts"], r["aum"]) for r in frame.to_dict("records")} == raw
        assert set(frame["currency"]) == {"usd", "eur", "jpy", "kwd"}  # every currency, never summed together

        totals, _ = fund.performance(frame)
        per_day = conn.execute(
            """SELECT product_id::text, date, sum(daily_return), sum(opening_balance) FROM investment.daily_performance
               WHERE date BETWEEN %s AND %s GROUP BY 1, 2 ORDER BY 1, 2""", (f.start, f.end)).fetchall()
        growth: dict[str, Decimal] = defaultdict(lambda: Decimal(1))
        for product, _, ret, opening in per_day:
            growth[product] *= 1 + ret / opening
        assert {r["product_id"]: r["twr_pct"] for r in totals.to_dict("records")} == {
            p: ((g - 1) * 100).quantize(Decimal("0.0001")) for p, g in growth.items()}

        histogram, extremes = fund.return_spread(conn, f, JAN[9])
        assert sum(histogram["accounts"]) == conn.execute(
            "SELECT count(*) FROM investment.daily_performance WHERE date = %s", (JAN[9],)).fetchone()[0]
        best = conn.execute("""SELECT account_id::text FROM investment.daily_performance WHERE date = %s
                               ORDER BY daily_return_percentage DESC, account_id LIMIT 1""", (JAN[9],)).fetchone()[0]
        assert extremes.iloc[0]["account_id"] == best and extremes.iloc[0]["rank"] == "best"

        distributions = fund.distributions(conn, f)
        raw = {(p, c): (n, g, fee, net) for p, c, n, g, fee, net in conn.execute(
            """SELECT d.period, p.currency, count(*), sum(d.gross_profit), sum(d.performance_fee_amount),
                      sum(d.net_profit) FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
               GROUP BY 1, 2""").fetchall()}
        assert raw, "the month was distributed for every account but the held-back one"
        assert {(r["period"], r["currency"]): (r["accounts"], r["gross_profit"], r["fees"], r["net_profit"])
                for r in distributions.to_dict("records")} == raw

        payouts = fund.payouts(conn, fund.Filters(today, today))
        usd = payouts[payouts["currency"] == "usd"].iloc[0]
        assert (usd["paid"], usd["reversed"], usd["failed"], usd["net_outflow"]) == (
            Decimal("17.00"), Decimal("7.00"), Decimal("3.00"), Decimal("10.00"))
        raw_paid = dict(conn.execute(
            """SELECT w.currency, sum(t.amount) FROM investment.transactions t
               JOIN investment.withdrawal_requests w ON w.id = t.withdrawal_request_id
               WHERE t.type = 'withdrawal' GROUP BY 1""").fetchall())
        assert {r["currency"]: r["paid"] for r in payouts.to_dict("records")} == raw_paid
        assert len(fund.waiting(conn, f)) == conn.execute(
            """SELECT count(*) FROM investment.withdrawal_requests WHERE status = 'processing'
               AND (review_status = 'pending_review' OR needs_operator IS NOT NULL)""").fetchone()[0]

        quality, held = fund.data_quality(conn, f)
        assert list(quality["date"]) == [d.isoformat() for d in JAN[:5]]  # the days the job ran
        stored = dict(conn.execute("""SELECT date::text, count(*) FROM investment.daily_performance
                                      WHERE date <= %s GROUP BY 1""", (JAN[4],)).fetchall())
        assert dict(zip(quality["date"], quality["stored"], strict=True)) == stored
        assert list(held["period"]) == ["2026-01"] and list(held["held_back"]) == [1]

        closed = conn.execute("SELECT id::text FROM investment.accounts WHERE status = 'closed' LIMIT 1").fetchone()
        for account_id in (victim, *(closed or ())):
            found = fund.account(conn, account_id, f)
            assert len(found["days"]) == conn.execute(
                "SELECT count(*) FROM investment.daily_performance WHERE account_id = %s", (account_id,)).fetchone()[0]
        assert fund.account(conn, "not-an-id", f) is None


def test_the_page_renders_every_section_and_its_csv(fund_book, monkeypatch):
    """The page and its CSV through the app (login checked separately, on a real API server)."""
    from fastapi.testclient import TestClient

    from investment_jobs.operations import fund_view

    book, victim, _ = fund_book

    async def logged_in(request, call_next):  # noqa: ANN001, ANN202 - the API server test checks the real one
        return await call_next(request)

    monkeypatch.setattr(fund_view, "login_required", logged_in)
    monkeypatch.setattr(fund_view, "jobs_section", lambda: {"status": "ok", "table": {"columns": [], "rows": []}})
    client = TestClient(fund_view.create_app())
    page = client.get("/", params={"start": "2026-01-01", "end": "2026-01-31", "account": victim})
    assert page.status_code == 200
    for section in fund_view.SECTIONS:
        assert f'id="{section}"' in page.text
    assert page.text.count('class="chart"') >= 8 and "No account" not in page.text
    usd_only = client.get("/", params={"start": "2026-01-01", "end": "2026-01-31", "currency": "usd"})
    assert "Assets under management, eur" in page.text and "Assets under management, eur" not in usd_only.text
    csv = client.get("/csv/book", params={"start": "2026-01-01", "end": "2026-01-31"})
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("date,product_id,product,currency")
    assert len(csv.text.splitlines()) == 1 + len(book.query(
        "SELECT DISTINCT date, product_id FROM investment.daily_performance"))
    assert client.get("/", params={"start": "2026-02-01", "end": "2026-01-01"}).status_code == 400
    assert client.get("/static/plotly.min.js").content.startswith(b"/**")
