"""monthly_distribution through dag.test() (and its steps) against real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from investment_jobs.business_dates import Period
from investment_jobs.fees import performance_fee
from investment_jobs.jobs import monthly
from tests.support.airflow_runs import run_dag, task_states, xcom
from tests.support.book import Book, fill_days, rechain

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

JAN = date(2026, 1, 1)
JAN_END = date(2026, 1, 31)
JANUARY = Period(2026, 1)


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


def approved(conn: psycopg.Connection, run) -> dict:  # noqa: ANN001
    """What the approval step hands to distribute: the computed rows' fingerprint."""
    from investment_jobs.jobs.monthly_review import fingerprint

    count, digest = fingerprint(conn, run)
    conn.rollback()  # a read: distribute opens its own transaction
    return {"approved": True, "fingerprint": digest, "accounts": count}


def succeeded(dag_run) -> None:  # noqa: ANN001
    assert str(dag_run.state) == "success", task_states(dag_run)


def inspected(book: Book) -> dict:
    """What an operator is told about January now: its assessment's summary (nothing written)."""
    st = monthly.reference_for(JANUARY, "inspect")
    with psycopg.connect(book.dsn) as conn:
        summary = monthly.summarise(conn, st, monthly.assess_accounts(conn, st, "UTC"))
        monthly.drop_staging(conn, st)
    return summary


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
        st = monthly.reference_for(JANUARY, run_id)
        with psycopg.connect(january.dsn) as conn:
            monthly.assess_accounts(conn, st, "UTC")
            monthly.compute_fees(conn, st)
            barrier.wait()  # both have assessed and computed before either writes
            results.append(monthly.distribute(conn, st, approved(conn, st)))
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
    summary = inspected(january)
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

    summary = inspected(january)
    assert [d["account_id"] for d in summary["drift"]] == [drifted]
    gross = summary["drift"][0]["differences"]["gross_profit"]
    assert Decimal(gross["stored_days_now"]) - Decimal(gross["distributed"]) == 1
    with pytest.raises(monthly.DistributionIncomplete, match="no longer match their stored days"):
        monthly.check_complete(summary)


def test_a_daily_rerun_in_a_distributed_month_reports_the_drift_at_once(book: Book, webhook, monkeypatch
                                                                         ) -> None:  # noqa: ANN001
    """The engine restates 2026-01-31 after January was paid: the daily rerun stores the new day
    (it succeeds), names the accounts whose distribution no longer adds up, and posts it; the
    distributions stay as they were."""
    url, received = webhook
    monkeypatch.setenv("ALERT_WEBHOOK_URL", url)
    january = book  # the engine's book as it is: every account it sends is active on the 31st
    fill_days(january, JAN, JAN_END)
    succeeded(run_dag("monthly_distribution", JAN))
    before = january.query(DISTRIBUTIONS)
    dag_run = run_dag("daily_performance", JAN_END)  # the engine's numbers differ from the stored ones
    succeeded(dag_run)
    drift = xcom(dag_run, "summarise")["distribution_drift"]
    changed = sorted(a for a, *_ in before if month_of_stored_days(january, JAN, JAN_END)[a] != next(
        (r[6], r[4], r[5]) for r in before if r[0] == a))
    assert drift["period"] == "2026-01" and drift["count"] == len(changed) > 0
    assert drift["account_ids"] == changed[:len(drift["account_ids"])]
    assert [m["text"] for m in received] == ["daily_performance restated 2026-01-31: 2026-01 drifted"]
    assert january.query(DISTRIBUTIONS) == before


def test_a_daily_run_outside_a_distributed_month_reports_no_drift(book: Book) -> None:
    fill_days(book, JAN, JAN_END)
    dag_run = run_dag("daily_performance", JAN_END)
    succeeded(dag_run)
    assert xcom(dag_run, "summarise")["distribution_drift"] == {"period": "2026-01", "count": 0, "account_ids": []}


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


def test_an_account_opened_and_closed_on_the_same_day_gets_no_row_and_stops_nobody(january: Book) -> None:
    """Defect 3 of issue 12: such an account crashed compute_fees (gross None) and no account of the
    book was distributed; retries could not fix it. It was active on no day of the month (contracts:
    closed_at must fall after D), so it gets no row; everyone else is distributed."""
    with january.connect() as conn:
        user, product = conn.execute("SELECT user_id, product_id FROM investment.accounts LIMIT 1").fetchone()
        blink = conn.execute(
            """INSERT INTO investment.accounts (user_id, product_id, status, initial_investment, current_balance,
                   opened_at, closed_at)
               VALUES (%s, %s, 'closed', 500, 0, '2026-01-12 09:00+00', '2026-01-12 17:00+00')
               RETURNING id::text""", (user, product)).fetchone()[0]
    dag_run = run_dag("monthly_distribution", JAN)
    succeeded(dag_run)
    distributed = {r[0] for r in january.query("SELECT account_id::text FROM investment.distributions")}
    assert blink not in distributed
    assert distributed == active_in(january, JAN, JAN_END) - {blink}


def test_one_account_whose_fee_cannot_be_computed_is_held_and_the_others_distributed(january: Book,
                                                                                     monkeypatch) -> None:  # noqa: ANN001
    """Whatever one odd account holds, it never stops the others: it is held back with the reason."""
    from investment_jobs import fees

    victim = sorted(active_in(january, JAN, JAN_END))[2]
    real = fees.performance_fee

    def refuses_one(gross, rate, currency, *args):  # noqa: ANN001, ANN202
        if gross == victim_gross:
            raise ValueError("a value the fee model refuses")
        return real(gross, rate, currency, *args)

    victim_gross = month_of_stored_days(january, JAN, JAN_END)[victim][0]
    monkeypatch.setattr(monthly, "performance_fee", refuses_one)
    st = monthly.reference_for(JANUARY, "odd")
    with psycopg.connect(january.dsn) as conn:
        outcomes = monthly.assess_accounts(conn, st, "UTC")
        assert monthly.compute_fees(conn, st)["held_error"] >= 1
        written = monthly.distribute(conn, st, approved(conn, st))
        summary = monthly.summarise(conn, st, {**outcomes, **written})
        monthly.drop_staging(conn, st)
    held = {h["account_id"]: h for h in summary["held_back"]}
    assert held[victim]["reason"] == "held_error" and "a value the fee model refuses" in held[victim]["why"]
    distributed = {r[0] for r in january.query("SELECT account_id::text FROM investment.distributions")}
    assert victim not in distributed and len(distributed) >= len(active_in(january, JAN, JAN_END)) - len(held)
    with pytest.raises(monthly.DistributionIncomplete, match="a value the fee model refuses"):
        monthly.check_complete(summary)


def test_a_periods_rate_is_fixed_by_its_first_distribution_run(january: Book) -> None:
    """Defect 10 of issue 12: a month distributed in two runs (an account held back, the product's
    fee changed in between) ended with two rates for one product and month. The rate of a period is
    the one its first distribution run used; the summary says the product's rate has changed since."""
    gap_account = sorted(active_in(january, JAN, JAN_END))[3]
    with january.connect() as conn:
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s AND date = '2026-01-17'",
                     (gap_account,))
        product, first_rate, currency = conn.execute(
            """SELECT p.id, p.performance_fee_percentage, p.currency FROM investment.accounts a
               JOIN investment.products p ON p.id = a.product_id WHERE a.id = %s""", (gap_account,)).fetchone()
    assert str(run_dag("monthly_distribution", JAN).state) == "failed"  # held back
    with january.connect() as conn:
        conn.execute("UPDATE investment.products SET performance_fee_percentage = 40 WHERE id = %s", (product,))
    fill_days(january, date(2026, 1, 17), date(2026, 1, 17))
    dag_run = run_dag("monthly_distribution", JAN)
    succeeded(dag_run)
    rates = january.query("SELECT DISTINCT performance_fee_percentage FROM investment.distributions "
                          "WHERE product_id = %s AND period = '2026-01'", (product,))
    assert rates == [(first_rate,)]
    gross, fee = january.query("SELECT gross_profit, performance_fee_amount FROM investment.distributions "
                               "WHERE account_id = %s", (gap_account,))[0]
    assert fee == performance_fee(gross, first_rate, currency).fee
    kept = xcom(dag_run, "summarise")["rates_kept_from_first_run"]
    assert [(k["product_id"], Decimal(k["period_rate"]), Decimal(k["product_rate_now"])) for k in kept] == [
        (str(product), first_rate, Decimal(40))]
    # A new period takes the product's new rate.
    assert january.query("SELECT performance_fee_percentage FROM investment.distribution_rates "
                         "WHERE period = '2026-01' AND product_id = %s", (product,)) == [(first_rate,)]


def test_jpy_net_profit_is_gross_minus_a_whole_yen_fee_exactly(book: Book) -> None:
    """Defect 9 of issue 12, decided (README, "Rounding"): the fee is in the currency's minor unit;
    the credited net profit is gross − fee exactly, sub-yen part included, because the engine keeps
    balances to 8 decimals in every currency and money leaves only through payouts, which are whole
    minor units. fee + net == gross holds to the last digit."""
    with book.connect() as conn:
        jpy = conn.execute("SELECT id FROM investment.products WHERE currency = 'jpy'").fetchone()[0]
        account = conn.execute("SELECT id::text FROM investment.accounts WHERE product_id = %s AND status = 'active' "
                               "ORDER BY id LIMIT 1", (jpy,)).fetchone()[0]
    fill_days(book, JAN, JAN_END)
    with book.connect() as conn:  # a month whose gross has a sub-yen part: 2911.38
        conn.execute("UPDATE investment.daily_performance SET daily_return = 0, closing_balance = opening_balance "
                     "WHERE account_id = %s", (account,))
        conn.execute("""UPDATE investment.daily_performance SET daily_return = 2911.38,
                        closing_balance = opening_balance + 2911.38 WHERE account_id = %s AND date = '2026-01-20'""",
                     (account,))
        rechain(conn)
    succeeded(run_dag("monthly_distribution", JAN))
    gross, rate, fee, net, tx = book.query(
        """SELECT gross_profit, performance_fee_percentage, performance_fee_amount, net_profit, transaction_id
           FROM investment.distributions WHERE account_id = %s""", (account,))[0]
    assert gross == Decimal("2911.38") and rate == Decimal(25)
    assert fee == Decimal(728) and fee == fee.to_integral_value()  # 727.845 → 728, half-even, whole yen
    assert net == Decimal("2183.38") and fee + net == gross
    assert book.query("SELECT amount FROM investment.transactions WHERE id = %s", (tx,)) == [(net,)]


def test_stored_days_outside_the_active_days_do_not_stand_in_for_a_missing_one(january: Book) -> None:
    """An account opened on the 10th with days stored before it (the engine's, kept): its month is
    complete only if each of its active days is stored, however many other days are."""
    late = sorted(active_in(january, JAN, JAN_END))[7]
    with january.connect() as conn:
        conn.execute("UPDATE investment.accounts SET opened_at = '2026-01-10 09:00+00' WHERE id = %s", (late,))
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s AND date = '2026-01-20'",
                     (late,))
    assert january.query("SELECT count(*) FROM investment.daily_performance WHERE account_id = %s",
                         (late,)) == [(30,)]  # more rows than its 22 active days
    summary = inspected(january)
    assert summary["held_back"] == [{"account_id": late, "reason": "held_incomplete",
                                     "missing_dates": ["2026-01-20"]}]


def test_a_month_runs_from_the_first_stored_day_to_the_last_whichever_days_those_are(january: Book) -> None:
    """The month's opening is its first stored day's and its closing and cumulative return its last
    one's: P's first and last day for most accounts, other days for one opened on the 5th (and the
    one that closed on the 15th), which are looked up by their key."""
    late = sorted(active_in(january, JAN, JAN_END))[5]
    with january.connect() as conn:
        conn.execute("UPDATE investment.accounts SET opened_at = '2026-01-05 09:00+00' WHERE id = %s", (late,))
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s AND date < '2026-01-05'",
                     (late,))
    closer = january.query("SELECT id::text FROM investment.accounts WHERE closed_at IS NOT NULL "
                           "AND closed_at::date = '2026-01-15'")[0][0]
    expected = {r[0]: r[1:] for r in january.query(
        """SELECT account_id::text, (array_agg(opening_balance ORDER BY date))[1],
                  (array_agg(closing_balance ORDER BY date DESC))[1],
                  (array_agg(cumulative_return ORDER BY date DESC))[1], sum(daily_return),
                  min(date), max(date), count(*)
           FROM investment.daily_performance WHERE date BETWEEN %s AND %s GROUP BY 1""", (JAN, JAN_END))}
    assert expected[late][4:6] == (date(2026, 1, 5), JAN_END)
    assert expected[closer][5] == date(2026, 1, 14)
    run = monthly.reference_for(JANUARY, "edges")
    with psycopg.connect(january.dsn) as conn:
        monthly.assess_accounts(conn, run, "UTC")
        tables = monthly.staging(run)
        assessed = {r[0]: r[1:] for r in tables.execute(
            conn, """SELECT account_id::text, opening_balance, closing_balance, cumulative_return, gross_profit,
                            stored_days, outcome FROM {assessed}""").fetchall()}
        monthly.drop_staging(conn, run)
    assert set(assessed) == set(expected)
    for account, (opening, closing, cumulative, gross, _first, _last, days) in expected.items():
        assert assessed[account] == (opening, closing, cumulative, gross, days, "distribute"), account
