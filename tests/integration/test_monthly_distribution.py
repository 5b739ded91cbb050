"""monthly_distribution through dag.test() (and its steps) against real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest
from investment_jobs.fees import performance_fee
from investment_jobs.jobs import monthly

from tests.conftest import Book, run_dag, task_states, xcom

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

JAN = date(2026, 1, 1)
JAN_END = date(2026, 1, 31)


def fill_days(book: Book, start: date, end: date, salt: str = "") -> None:
    """Store a daily row for every day each account is active in [start, end] (contracts.md's rule),
    with deterministic returns in [-9.00, 11.00], then chain cumulative_return as the daily job does."""
    with book.connect() as conn:
        conn.execute(
            """
            INSERT INTO investment.daily_performance (account_id, product_id, date, opening_balance,
                closing_balance, daily_return, daily_return_percentage, cumulative_return,
                cumulative_return_percentage, trades_executed, winning_trades, losing_trades)
            SELECT a.id, a.product_id, g.d::date, 10000, 10000 + r.ret, r.ret, r.ret / 100, 0, 0, 1, 1, 0
            FROM investment.accounts a
            CROSS JOIN generate_series(%(start)s::date, %(end)s::date, interval '1 day') g(d)
            CROSS JOIN LATERAL (SELECT ((abs(hashtext(a.id::text || g.d::text || %(salt)s)) %% 2001) - 900)::numeric
                                       / 100 AS ret) r
            WHERE a.status <> 'suspended' AND a.opened_at::date <= g.d
              AND (a.closed_at IS NULL OR a.closed_at::date > g.d)
            ON CONFLICT DO NOTHING
            """, {"start": start, "end": end, "salt": salt})
        rechain(conn)


def rechain(conn: psycopg.Connection) -> None:
    conn.execute(
        """UPDATE investment.daily_performance t SET cumulative_return = c.cum
           FROM (SELECT account_id, date, sum(daily_return) OVER (PARTITION BY account_id ORDER BY date) cum
                 FROM investment.daily_performance) c
           WHERE t.account_id = c.account_id AND t.date = c.date""")


def active_in(book: Book, start: date, end: date) -> set[str]:
    return {r[0] for r in book.query(
        """SELECT id::text FROM investment.accounts WHERE status <> 'suspended' AND opened_at::date <= %s
           AND (closed_at IS NULL OR closed_at::date > %s)""", (end, start))}


def month_of_stored_days(book: Book, start: date, end: date) -> dict[str, tuple]:
    rows = book.query(
        """SELECT account_id::text, sum(daily_return), (array_agg(opening_balance ORDER BY date))[1],
                  (array_agg(closing_balance ORDER BY date DESC))[1]
           FROM investment.daily_performance WHERE date BETWEEN %s AND %s GROUP BY 1""", (start, end))
    return {r[0]: r[1:] for r in rows}


DISTRIBUTIONS = """SELECT d.account_id::text, d.period, d.period_start, d.period_end, d.opening_balance,
                          d.closing_balance, d.gross_profit, d.performance_fee_percentage,
                          d.performance_fee_amount, d.net_profit, d.status, d.transaction_id, d.updated_at
                   FROM investment.distributions d ORDER BY 1, 2"""
LEDGER = """SELECT id, account_id::text, type, amount, distribution_id, distribution_period, status
            FROM investment.transactions ORDER BY id"""
TOTALS = "SELECT id::text, total_profit_distributed, high_water_mark FROM investment.accounts ORDER BY 1"


def succeeded(dag_run) -> None:  # noqa: ANN001
    assert str(dag_run.state) == "success", task_states(dag_run)


@pytest.fixture
def january(book: Book) -> Book:
    # One account closes mid-month: it is distributed for the days it was active.
    closer = sorted(a.account_id for a in book.accounts if a.status == "active")[0]
    with book.connect() as conn:
        conn.execute("UPDATE investment.accounts SET status = 'closed', closed_at = '2026-01-15 10:00+00' "
                     "WHERE id = %s", (closer,))
    fill_days(book, JAN, JAN_END)
    return book


def test_a_month_of_daily_rows_gives_the_expected_distributions(january: Book) -> None:
    dag_run = run_dag("monthly_distribution", JAN)
    succeeded(dag_run)

    expected_accounts = active_in(january, JAN, JAN_END)
    stored = month_of_stored_days(january, JAN, JAN_END)
    rows = january.query(
        """SELECT d.account_id::text, d.period_start, d.period_end, d.opening_balance, d.closing_balance,
                  d.gross_profit, d.performance_fee_percentage, d.performance_fee_amount, d.net_profit,
                  d.status, d.transaction_id, p.currency, a.total_profit_distributed
           FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
           JOIN investment.accounts a ON a.id = d.account_id WHERE d.period = '2026-01'""")
    assert {r[0] for r in rows} == expected_accounts
    statuses = set()
    for (account, start, end, opening, closing, gross, rate, fee, net, status, tx, currency, total) in rows:
        assert (start, end) == (JAN, JAN_END)
        assert (gross, opening, closing) == stored[account]
        want = performance_fee(gross, rate, currency)
        assert (status, fee, net) == (want.status, want.fee, want.net)
        statuses.add(status)
        if status == "distributed":
            assert fee + net == gross
            ledger = january.query("SELECT type, amount, distribution_period, status FROM investment.transactions "
                                   "WHERE id = %s", (tx,))
            assert ledger == [("profit_distribution", net, "2026-01", "completed")]
            assert total == net
        else:
            assert tx is None and fee == net == 0 and gross <= 0 and total == 0
    assert statuses == {"distributed", "no_profit"}
    assert january.query("SELECT count(*) FROM investment.transactions") == [
        (sum(1 for r in rows if r[9] == "distributed"),)]

    summary = xcom(dag_run, "summarise")
    assert summary["outcomes"]["distribute"] == len(expected_accounts)
    assert summary["written_this_run"]["distributed"] + summary["written_this_run"]["no_profit"] == len(rows)
    usd = summary["period_totals_by_currency"]["usd"]
    assert Decimal(usd["gross_profit"]) == Decimal(usd["performance_fees"]) + Decimal(usd["net_profit"])


def test_a_rerun_is_a_no_op(january: Book) -> None:
    succeeded(run_dag("monthly_distribution", JAN))
    before = [january.query(q) for q in (DISTRIBUTIONS, LEDGER, TOTALS)]
    dag_run = run_dag("monthly_distribution", JAN)
    succeeded(dag_run)
    assert [january.query(q) for q in (DISTRIBUTIONS, LEDGER, TOTALS)] == before
    assert xcom(dag_run, "summarise")["outcomes"]["already"] == len(before[0])


def test_two_runs_at_once_distribute_once(january: Book) -> None:
    barrier = threading.Barrier(2)
    results: list[dict] = []

    def one_run(run_id: str) -> None:
        st = monthly.staging_for("2026-01", run_id)
        with psycopg.connect(january.dsn) as conn:
            monthly.assess_accounts(conn, st, "UTC")
            monthly.compute_fees(conn, st)
            barrier.wait()  # both have assessed and computed before either writes
            results.append(monthly.distribute(conn, st))
            monthly.drop_staging(conn, st)

    threads = [threading.Thread(target=one_run, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    active = active_in(january, JAN, JAN_END)
    written = sorted(r["distributed"] + r["no_profit"] for r in results)
    assert written == [0, len(active)]
    assert sorted(r["not_written"] for r in results) == [0, len(active)]
    assert january.query("SELECT count(*), count(DISTINCT account_id) FROM investment.distributions") == [
        (len(active), len(active))]
    paid = january.query("""SELECT coalesce(sum(net_profit), 0) FROM investment.distributions
                            WHERE status = 'distributed'""")[0][0]
    assert january.query("SELECT sum(total_profit_distributed) FROM investment.accounts")[0][0] == paid
    assert january.query("SELECT coalesce(sum(amount), 0) FROM investment.transactions")[0][0] == paid


def test_an_incomplete_month_holds_the_account_back_until_backfilled(january: Book) -> None:
    gap_account = sorted(active_in(january, JAN, JAN_END))[3]
    with january.connect() as conn:
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s AND date = '2026-01-17'",
                     (gap_account,))
    dag_run = run_dag("monthly_distribution", JAN)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["distribute"] == "success"
    distributed = {r[0] for r in january.query("SELECT account_id::text FROM investment.distributions")}
    assert distributed == active_in(january, JAN, JAN_END) - {gap_account}

    # What the operator is told: the account and its missing date.
    st = monthly.staging_for("2026-01", "inspect")
    with psycopg.connect(january.dsn) as conn:
        outcomes = monthly.assess_accounts(conn, st, "UTC")
        summary = monthly.summarise(conn, st, outcomes)
        monthly.drop_staging(conn, st)
    assert summary["held_back"] == [{"account_id": gap_account, "reason": "held_incomplete",
                                     "missing_dates": ["2026-01-17"]}]
    with pytest.raises(monthly.DistributionIncomplete, match=f"{gap_account} \\(missing 2026-01-17\\)"):
        monthly.check_complete(summary)

    fill_days(january, date(2026, 1, 17), date(2026, 1, 17))  # the backfill
    succeeded(run_dag("monthly_distribution", JAN))
    assert january.query("SELECT count(*) FROM investment.distributions WHERE account_id = %s",
                         (gap_account,)) == [(1,)]


def test_a_deposit_mid_month_is_not_profit(january: Book) -> None:
    depositor = sorted(active_in(january, JAN, JAN_END))[5]
    with january.connect() as conn:  # 5,000 arrives on the 15th: balances jump, returns do not
        conn.execute("""UPDATE investment.daily_performance SET opening_balance = opening_balance + 5000,
                        closing_balance = closing_balance + 5000
                        WHERE account_id = %s AND date >= '2026-01-15'""", (depositor,))
    succeeded(run_dag("monthly_distribution", JAN))
    gross, opening, closing = january.query(
        "SELECT gross_profit, opening_balance, closing_balance FROM investment.distributions WHERE account_id = %s",
        (depositor,))[0]
    returns = january.query("SELECT sum(daily_return) FROM investment.daily_performance WHERE account_id = %s",
                            (depositor,))[0][0]
    assert gross == returns
    assert closing - opening != gross


def test_drift_after_a_late_daily_rerun_is_reported_and_not_rewritten(january: Book) -> None:
    succeeded(run_dag("monthly_distribution", JAN))
    before = january.query(DISTRIBUTIONS)
    drifted = january.query("SELECT min(account_id::text) FROM investment.daily_performance "
                            "WHERE date = '2026-01-31'")[0][0]
    with january.connect() as conn:  # a day is rerun later, with a different return
        conn.execute("""UPDATE investment.daily_performance SET daily_return = daily_return + 1,
                        closing_balance = closing_balance + 1 WHERE account_id = %s AND date = '2026-01-31'""",
                     (drifted,))
    dag_run = run_dag("monthly_distribution", JAN)
    assert str(dag_run.state) == "failed"
    assert january.query(DISTRIBUTIONS) == before

    st = monthly.staging_for("2026-01", "inspect")
    with psycopg.connect(january.dsn) as conn:
        summary = monthly.summarise(conn, st, monthly.assess_accounts(conn, st, "UTC"))
        monthly.drop_staging(conn, st)
    assert [d["account_id"] for d in summary["drift"]] == [drifted]
    gross = summary["drift"][0]["differences"]["gross_profit"]
    assert Decimal(gross["stored_days_now"]) - Decimal(gross["distributed"]) == 1
    with pytest.raises(monthly.DistributionIncomplete, match="no longer match their stored days"):
        monthly.check_complete(summary)


def test_high_water_mark_over_three_months(book: Book) -> None:
    with book.connect() as conn:
        conn.execute("UPDATE investment.products SET fee_model = 'high_water_mark'")
    months = [(date(2026, 1, 1), date(2026, 1, 31)), (date(2026, 2, 1), date(2026, 2, 28)),
              (date(2026, 3, 1), date(2026, 3, 31))]
    for start, end in months:
        fill_days(book, start, end, salt=f"{start:%m}")
    marks = {a: Decimal(0) for a in active_in(book, *months[0])}
    cumulative = {a: Decimal(0) for a in marks}
    for start, end in months:
        succeeded(run_dag("monthly_distribution", start))
        stored = month_of_stored_days(book, start, end)
        rows = book.query(
            """SELECT d.account_id::text, d.gross_profit, d.performance_fee_percentage, d.performance_fee_amount,
                      d.high_water_mark_before, d.high_water_mark_after, p.currency
               FROM investment.distributions d JOIN investment.products p ON p.id = d.product_id
               WHERE d.period = %s""", (f"{start:%Y-%m}",))
        for account, gross, rate, fee, before, after, currency in rows:
            if account not in marks:
                continue
            # All of this account's stored days up to the month's end (it may predate January).
            cumulative[account] = book.query(
                "SELECT sum(daily_return) FROM investment.daily_performance WHERE account_id = %s AND date <= %s",
                (account, end))[0][0]
            want = performance_fee(stored[account][0], rate, currency, "high_water_mark", cumulative[account],
                                   marks[account])
            assert (gross, fee, before, after) == (stored[account][0], want.fee, marks[account],
                                                   want.high_water_mark_after)
            marks[account] = want.high_water_mark_after
    final = dict((a, m) for a, _, m in book.query(TOTALS))
    assert all(final[a] == m for a, m in marks.items())
    assert any(m > 0 for m in marks.values())


def test_a_month_that_has_not_ended_fails_at_once(book: Book) -> None:
    this_month = datetime.now(UTC).date().replace(day=1)
    dag_run = run_dag("monthly_distribution", this_month)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["assess_accounts"] == "failed"
    assert book.query("SELECT count(*) FROM investment.distributions") == [(0,)]
