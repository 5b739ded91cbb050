"""The fund view's summary tables stay equal to a recomputation from the raw rows, whatever the
jobs did: a month of days in shuffled order, a rerun, withdrawals paid, failed and reversed, and
the month's distribution."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.support import daily_steps as steps
from tests.support.airflow_runs import run_dag
from tests.support.withdrawals import accounts_by_currency, add_request, requests

pytestmark = pytest.mark.integration

MONTH = [date(2026, 1, 1) + timedelta(days=i) for i in range(31)]
SUMMARIES = {
    "book_daily": "product_id, date",
    "distribution_monthly": "product_id, period",
    "payouts_daily": "date, currency",
}
def _read(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every summary row (but its created_at/updated_at, which differ between writes), in key order."""
    out = {}
    for table, order in SUMMARIES.items():
        columns = [r[0] for r in conn.execute(
            """SELECT column_name FROM information_schema.columns WHERE table_schema = 'investment'
               AND table_name = %s AND column_name NOT IN ('created_at', 'updated_at') ORDER BY ordinal_position""",
            (table,)).fetchall()]
        out[table] = conn.execute(f"SELECT {', '.join(columns)} FROM investment.{table} ORDER BY {order}").fetchall()
    return out


def summaries(dsn: str) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as conn:
        return _read(conn)


def recomputed(dsn: str) -> dict[str, list[tuple]]:
    """The same tables rebuilt from the raw rows, in a transaction that is rolled back."""
    from investment_jobs.views.summaries import rebuild_all

    with psycopg.connect(dsn) as conn:
        rebuild_all(conn, "UTC")
        out = _read(conn)
        conn.rollback()
    return out


def run_day(day: date) -> None:
    steps.run_day(day, f"summaries-{day}")


def test_the_summaries_equal_a_recomputation_after_everything_the_jobs_do(book, stripe_standin, airflow_db):
    shuffled = MONTH[:]
    random.Random(17).shuffle(shuffled)
    for day in shuffled:
        run_day(day)
    run_day(MONTH[9])  # a rerun of one day
    assert summaries(book.dsn) == recomputed(book.dsn)
    assert len(summaries(book.dsn)["book_daily"]) == len(book.query(
        "SELECT DISTINCT product_id, date FROM investment.daily_performance"))

    # withdrawals: paid, refused, then one reversed after it was paid
    usd = accounts_by_currency(book)["usd"]
    paid = add_request(book, usd[0], "10.00")
    refused = add_request(book, usd[1], "5.00", destination={"bank_account_id": "nope"}, created_offset=1)
    returned = add_request(book, usd[2], "7.00", created_offset=2)
    for currency, rows in accounts_by_currency(book).items():
        if currency != "usd":
            add_request(book, rows[0], {"jpy": "300", "kwd": "0.500"}.get(currency, "2.00"))
    stripe_standin.faults(hold=True)
    assert str(run_dag("withdrawal_processing", MONTH[-1]).state) == "success"
    in_flight = summaries(book.dsn)["payouts_daily"]
    assert sum(r[8] for r in in_flight) >= 3  # claimed and still in transit
    assert summaries(book.dsn) == recomputed(book.dsn)
    stripe_standin.faults(hold=False)
    assert str(run_dag("withdrawal_processing", MONTH[-1]).state) == "success"
    stripe_standin.set_payout(requests(book)[returned]["payout_id"], status="failed", failure_code="account_closed")
    assert str(run_dag("withdrawal_processing", MONTH[-1]).state) == "success"
    assert requests(book)[paid]["status"] == "completed" and requests(book)[returned]["status"] == "failed"
    assert requests(book)[refused]["status"] == "failed"
    now = summaries(book.dsn)
    assert now == recomputed(book.dsn)
    usd_rows = [r for r in now["payouts_daily"] if r[1] == "usd"]
    assert sum(r[3] for r in usd_rows) == Decimal("17.00")  # paid: 10 + 7 (the 7 came back later)
    assert sum(r[5] for r in usd_rows) == Decimal("7.00")  # reversed
    assert sum(r[7] for r in usd_rows) == Decimal("5.00")  # failed without being paid
    assert sum(r[8] for r in now["payouts_daily"]) == 0  # nothing in flight any more

    # the month's distribution
    assert str(run_dag("monthly_distribution", MONTH[0]).state) == "success"
    monthly = summaries(book.dsn)["distribution_monthly"]
    assert monthly and {r[1] for r in monthly} == {"2026-01"}
    totals = book.query("""SELECT sum(gross_profit), sum(performance_fee_amount), sum(net_profit), count(*)
                           FROM investment.distributions WHERE period = '2026-01'""")[0]
    assert (sum(r[6] for r in monthly), sum(r[7] for r in monthly), sum(r[8] for r in monthly),
            sum(r[3] for r in monthly)) == totals
    assert summaries(book.dsn) == recomputed(book.dsn)


def test_the_migration_summarises_what_was_stored_before_it(pg_server):
    """Rows stored before migration 0010 are summarised by it (migrate to 0009, store, migrate on)."""
    from investment_jobs.db.migrate import upgrade
    from investment_jobs_dev.book import plan_book, seed_book
    from tests.support.book import fill_days

    dsn = pg_server.fresh_database("ij_summaries_migration")
    try:
        upgrade(lambda: psycopg.connect(dsn), "0009")
        with psycopg.connect(dsn) as conn:
            seed_book(conn, plan_book(8, seed=3, first_open=date(2025, 6, 1), last_open=date(2025, 12, 1)), seed=3)
        fill_days(dsn, MONTH[0], MONTH[4])
        upgrade(lambda: psycopg.connect(dsn))
        stored = summaries(dsn)["book_daily"]
        assert {r[1] for r in stored} == set(MONTH[:5])
        assert summaries(dsn) == recomputed(dsn)
    finally:
        pg_server.drop_database("ij_summaries_migration")


def test_a_withdrawal_completed_before_requests_had_a_currency_is_summarised_in_its_products(book, stripe_standin,
                                                                                              airflow_db):
    """Regression (found by the approvals stack test): ``withdrawal_requests.currency`` is set at the
    claim, so a request completed before migration 0004 (or written by another system) has none,
    and the payouts summary of its day made every claim of that day fail on a NOT NULL."""
    from datetime import UTC, datetime

    account = accounts_by_currency(book)["jpy"][0]
    old = add_request(book, account, "500", status="pending")
    with book.connect() as conn:
        (ledger,) = conn.execute("""INSERT INTO investment.transactions (account_id, user_id, type, amount,
                                        balance_before, balance_after, withdrawal_request_id, status, processed_at)
                                    VALUES (%s, %s, 'withdrawal', 500, 1000, 500, %s, 'completed', now())
                                    RETURNING id""", (account[0], account[1], old)).fetchone()
        conn.execute("""UPDATE investment.withdrawal_requests SET status = 'completed', transaction_id = %s,
                            processed_at = now() WHERE id = %s""", (ledger, old))
    assert book.query("SELECT currency FROM investment.withdrawal_requests WHERE id = %s", (old,)) == [(None,)]
    add_request(book, accounts_by_currency(book)["usd"][0], "4.00", created_offset=1)
    assert str(run_dag("withdrawal_processing", MONTH[-1]).state) == "success"
    today = datetime.now(UTC).date()  # clock-ok: the ledger rows are processed now
    rows = {r[1]: r for r in summaries(book.dsn)["payouts_daily"] if r[0] == today}
    assert (rows["jpy"][2], rows["jpy"][3]) == (1, Decimal("500"))  # the product's currency
    assert (rows["usd"][2], rows["usd"][3]) == (1, Decimal("4.00"))
    assert summaries(book.dsn) == recomputed(book.dsn)


def test_a_first_store_with_rejects_sums_only_the_rows_it_stored(book, engine) -> None:  # noqa: ANN001
    """D's book rows, the summary's totals and its missing accounts, with an unknown account, a
    duplicated one, a malformed item and a silent one among the engine's: what D's stored rows give."""
    day = MONTH[4]
    active = sorted(r[0] for r in book.query(
        """SELECT id::text FROM investment.accounts WHERE status <> 'suspended' AND opened_at::date <= %s
           AND (closed_at IS NULL OR closed_at::date > %s)""", (day, day)))
    steps.run_day(day - timedelta(days=1), "before")
    malformed, duplicated, silent = active[0], active[1], active[2]
    engine.register([{"account_id": silent, "opened_on": "2025-01-01", "closed_on": None,
                      "initial_balance": "1", "trading": False}])  # the engine sends nothing for it
    engine.faults(malformed={malformed: "nan"}, unknown_accounts=1, duplicate_accounts=[duplicated])
    summary = steps.run_day(day, "with-rejects")

    assert summaries(book.dsn) == recomputed(book.dsn)
    stored = book.query("""SELECT p.currency, count(*), sum(d.daily_return), sum(d.closing_balance)
                           FROM investment.daily_performance d JOIN investment.products p ON p.id = d.product_id
                           WHERE d.date = %s GROUP BY 1 ORDER BY 1""", (day,))
    assert summary["totals_by_currency"] == {
        cur: {"accounts": n, "daily_return": str(ret), "closing_balance": str(bal)} for cur, n, ret, bal in stored}
    assert sum(n for _, n, _, _ in stored) == summary["processed"] == len(active) - 3
    assert summary["missing_account_ids"] == [silent] and summary["missing_count"] == 1
    assert summary["rejected_count"] == 4  # the malformed one, the unknown one, the duplicate's two
