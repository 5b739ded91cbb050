"""daily_performance through dag.test() against real PostgreSQL and the ML engine stand-in.

Every test asserts the rows, not just the run state.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from investment_jobs.money import chain_twr
from investment_jobs_dev.standins.ml_engine_data import EngineAccount, daily_item
from tests.support.airflow_runs import run_dag, task_states, xcom
from tests.support.book import Book
from tests.support.daily_steps import run_day as run_day_steps
from tests.support.stack_runs import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

DAY = date(2026, 1, 5)
TABLE = """SELECT account_id::text, product_id::text, date, opening_balance, closing_balance, daily_return,
                  daily_return_percentage, cumulative_return, cumulative_return_percentage,
                  trades_executed, winning_trades, losing_trades, ml_agent_data::text
           FROM investment.daily_performance ORDER BY account_id, date"""
ACCOUNTS = "SELECT id::text, current_balance, total_return_percentage FROM investment.accounts ORDER BY id"


def active_on(book: Book, day: date) -> set[str]:
    return {a.account_id for a in book.accounts
            if a.status != "suspended" and a.opened_on <= day and (a.closed_on is None or a.closed_on > day)}


def expected_item(book: Book, account_id: str, day: date) -> dict:
    a = next(a for a in book.accounts if a.account_id == account_id)
    return daily_item(7, EngineAccount(a.account_id, a.opened_on, a.closed_on, a.initial_investment), day)


def succeeded(dag_run) -> None:  # noqa: ANN001
    assert str(dag_run.state) == "success", task_states(dag_run)


def test_one_day_stores_every_active_account_exactly(book: Book) -> None:
    succeeded(run_dag("daily_performance", DAY))

    rows = book.query("SELECT account_id::text, opening_balance, closing_balance, daily_return, "
                      "daily_return_percentage, cumulative_return, ml_agent_data->>'confidence' "
                      "FROM investment.daily_performance WHERE date = %s", (DAY,))
    assert {r[0] for r in rows} == active_on(book, DAY)
    assert len(rows) == len(active_on(book, DAY)) > 10
    for account_id, opening, closing, ret, pct, cumulative, confidence in rows:
        item = expected_item(book, account_id, DAY)
        assert (opening, closing, ret, pct) == (
            Decimal(item["opening_balance"]), Decimal(item["closing_balance"]),
            Decimal(item["daily_return"]), Decimal(item["daily_return_percentage"]))
        assert cumulative == ret  # the first stored day
        assert confidence == item["ml_agent_data"]["confidence"]
    balances = dict(book.query("SELECT a.id::text, a.current_balance FROM investment.accounts a "
                               "JOIN investment.daily_performance d ON d.account_id = a.id AND d.date = %s",
                               (DAY,)))
    assert balances == {r[0]: r[2] for r in rows}
    assert book.query("SELECT count(*) FROM information_schema.tables "
                      "WHERE table_schema = 'investment_staging'") == [(0,)]


def reset_book(book: Book) -> None:
    with book.connect() as conn:
        conn.execute("TRUNCATE investment.daily_performance, investment.daily_performance_rejects")
        conn.execute("UPDATE investment.accounts SET current_balance = initial_investment, "
                     "total_return_percentage = 0")


def test_month_forwards_and_backwards_give_identical_tables(book: Book) -> None:
    """The job's steps as its tasks call them (62 dates through dag.test() would mostly measure
    Airflow), then the late rerun through the DAG itself."""
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(31)]
    for day in days:
        run_day_steps(day)
    forwards, forward_accounts = book.query(TABLE), book.query(ACCOUNTS)

    # The cumulative fields are the sum and the TWR chain of the stored days, in date order.
    by_account: dict[str, list] = {}
    for row in forwards:
        by_account.setdefault(row[0], []).append(row)
    for rows in by_account.values():
        assert rows[-1][7] == sum(r[5] for r in rows)
        assert rows[-1][8] == chain_twr([r[6] for r in rows])

    reset_book(book)
    for day in reversed(days):
        run_day_steps(day)
    assert book.query(TABLE) == forwards
    assert book.query(ACCOUNTS) == forward_accounts

    # A late rerun of one earlier day, out of order, changes nothing either.
    succeeded(run_dag("daily_performance", days[9]))
    assert book.query(TABLE) == forwards


def test_rerun_of_a_day_changes_nothing(book: Book) -> None:
    succeeded(run_dag("daily_performance", DAY))
    before = book.query(TABLE + "")
    stamps = book.query("SELECT account_id, updated_at FROM investment.daily_performance ORDER BY 1")
    succeeded(run_dag("daily_performance", DAY))
    assert book.query(TABLE) == before
    assert book.query("SELECT account_id, updated_at FROM investment.daily_performance ORDER BY 1") == stamps


def test_stale_backfill_leaves_newer_balance_alone(book: Book) -> None:
    later, earlier = DAY, DAY - timedelta(days=3)
    succeeded(run_dag("daily_performance", later))
    # Something outside this job (a completed withdrawal) moved one balance after `later`.
    moved = sorted(active_on(book, later) & active_on(book, earlier))[0]
    with book.connect() as conn:
        conn.execute("UPDATE investment.accounts SET current_balance = current_balance - 100 WHERE id = %s",
                     (moved,))
    balances = dict(book.query("SELECT id::text, current_balance FROM investment.accounts"))

    succeeded(run_dag("daily_performance", earlier))
    assert dict(book.query("SELECT id::text, current_balance FROM investment.accounts")) == balances
    # total_return_percentage follows the newest day, which the earlier day re-chained.
    rows = book.query("""SELECT a.total_return_percentage, d.cumulative_return_percentage,
                                d.cumulative_return, e.daily_return + d.daily_return
                         FROM investment.accounts a
                         JOIN investment.daily_performance d ON d.account_id = a.id AND d.date = %s
                         JOIN investment.daily_performance e ON e.account_id = a.id AND e.date = %s""",
                      (later, earlier))
    assert rows and all(r[0] == r[1] and r[2] == r[3] for r in rows)


BAD_KINDS = {
    "missing_field": "missing field 'closing_balance'",
    "non_numeric": "opening_balance: not a number",
    "nan": "daily_return: not a finite number",
    "infinity": "daily_return_percentage: not a finite number",
    "negative_closing": "negative closing balance",
    "return_mismatch": "differs from closing - opening",
}


def test_each_bad_item_is_rejected_with_its_reason_and_good_items_persist(book: Book, engine) -> None:  # noqa: ANN001
    active = sorted(active_on(book, DAY))
    bad = dict(zip(active, BAD_KINDS, strict=False))
    suspended = next(a for a in book.accounts if a.status == "suspended")
    # The engine also sends a suspended account, an unknown one, and one account twice.
    engine.register([{"account_id": suspended.account_id, "opened_on": "2025-01-01", "closed_on": None,
                      "initial_balance": "1000", "trading": True}])
    duplicated = active[len(BAD_KINDS)]
    engine.faults(malformed=bad, unknown_accounts=1, duplicate_accounts=[duplicated])

    dag_run = run_dag("daily_performance", DAY)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["summarise"] == "failed"
    assert task_states(dag_run)["store_day"] == "success"

    rejects = book.query("SELECT account_id, reason, item FROM investment.daily_performance_rejects "
                         "WHERE date = %s AND run_id = %s", (DAY, dag_run.run_id))
    reasons = {account: reason for account, reason, _ in rejects}
    for account_id, kind in bad.items():
        assert BAD_KINDS[kind] in reasons[account_id], (kind, reasons[account_id])
    assert "account not active" in reasons[suspended.account_id]
    assert "status suspended" in reasons[suspended.account_id]
    assert any(r == "unknown account" for r in reasons.values())
    assert [r for a, r, _ in rejects if a == duplicated] == [
        "2 items for this account and date; none is taken until the engine sends one"] * 2
    assert all(item is not None for _, _, item in rejects)

    stored = {r[0] for r in book.query("SELECT account_id::text FROM investment.daily_performance")}
    expected_good = set(active) - set(bad) - {duplicated}
    assert stored == expected_good

    summary = xcom(dag_run, "summarise")
    assert summary is None  # the task failed: its reason is in the log, the rejects in the table

    # The engine is fixed; a rerun of D completes the rejected accounts.
    engine.faults()
    engine.register([{"account_id": suspended.account_id, "opened_on": "2025-01-01", "closed_on": None,
                      "initial_balance": "1000", "trading": False}])
    succeeded(run_dag("daily_performance", DAY))
    stored = {r[0] for r in book.query("SELECT account_id::text FROM investment.daily_performance")}
    assert stored == set(active)


def test_reject_tolerance_lets_the_run_succeed(book: Book, engine, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DAILY_REJECT_TOLERANCE", "1")
    victim = sorted(active_on(book, DAY))[0]
    engine.faults(malformed={victim: "nan"})
    dag_run = run_dag("daily_performance", DAY)
    succeeded(dag_run)
    summary = xcom(dag_run, "summarise")
    assert summary["rejected_count"] == 1
    assert summary["rejected"][0]["account_id"] == victim
    assert summary["processed"] == len(active_on(book, DAY)) - 1


def test_missing_accounts_are_listed_in_the_summary(book: Book, engine) -> None:  # noqa: ANN001
    silent = sorted(active_on(book, DAY))[:2]
    engine.register([{"account_id": a, "opened_on": "2025-01-01", "closed_on": None,
                      "initial_balance": "1", "trading": False} for a in silent])
    dag_run = run_dag("daily_performance", DAY)
    succeeded(dag_run)
    summary = xcom(dag_run, "summarise")
    assert summary["missing_count"] == 2
    assert summary["missing_account_ids"] == silent
    assert summary["processed"] == len(active_on(book, DAY)) - 2


def test_bursts_of_429_and_500_succeed_after_retries(book: Book, engine) -> None:  # noqa: ANN001
    engine.faults(fail_next=[429, 500, 503, 429, 500])
    succeeded(run_dag("daily_performance", DAY))
    requests = engine.stats()["requests"]
    assert requests["/api/v1/performance/daily:429"] == 2
    assert requests["/api/v1/performance/daily:500"] == 2
    count = book.query("SELECT count(*) FROM investment.daily_performance WHERE date = %s", (DAY,))
    assert count == [(len(active_on(book, DAY)),)]


def test_engine_down_fails_the_run_and_writes_nothing(book: Book, engine) -> None:  # noqa: ANN001
    engine.faults(down=True)
    dag_run = run_dag("daily_performance", DAY)
    assert str(dag_run.state) == "failed"
    states = task_states(dag_run)
    assert states["pull_ml_performance"] == "failed"
    assert states["store_day"] == "upstream_failed"
    # HTTP retries (4 attempts) in each of the 2 task tries.
    assert engine.stats()["requests"]["/api/v1/performance/daily:503"] == 8
    assert book.query("SELECT count(*) FROM investment.daily_performance") == [(0,)]
    assert book.query("SELECT count(*) FROM investment.daily_performance_rejects") == [(0,)]
    assert book.query("SELECT count(*) FROM information_schema.tables "
                      "WHERE table_schema = 'investment_staging'") == [(0,)]


def test_a_day_that_has_not_ended_fails_at_once_and_writes_nothing(book: Book, engine) -> None:  # noqa: ANN001
    today = datetime.now(UTC).date()
    dag_run = run_dag("daily_performance", today)
    assert str(dag_run.state) == "failed"
    states = task_states(dag_run)
    assert states["fetch_active_accounts"] == "failed"
    assert states["drop_staging"] in ("skipped", "upstream_failed")
    assert dag_run.get_task_instance("fetch_active_accounts").try_number == 1  # no retry: it cannot help
    assert engine.stats()["requests"] == {}
    assert book.query("SELECT count(*) FROM investment.daily_performance") == [(0,)]


def test_a_date_stored_while_another_is_between_its_pull_and_its_store_leaves_a_sequential_book(
        book: Book, monkeypatch) -> None:  # noqa: ANN001
    """D+1 has pulled its items when D runs start to end (a backfill with several dates at once);
    D+1's store_day then chains from the D stored meanwhile: rows and accounts as if in order."""
    from investment_jobs.jobs import daily

    first, second = date(2026, 1, 1), date(2026, 1, 2)
    real_pull = daily.pull_performance

    def pull_then_the_day_before_lands(conn, client, run, *args):  # noqa: ANN001, ANN202
        counts = real_pull(conn, client, run, *args)
        if run.business_date == second:
            monkeypatch.setattr(daily, "pull_performance", real_pull)
            succeeded(run_dag("daily_performance", first))  # lands while D+1 is between its tasks
        return counts

    monkeypatch.setattr(daily, "pull_performance", pull_then_the_day_before_lands)
    succeeded(run_dag("daily_performance", second))
    interleaved = (book.query(TABLE), book.query(ACCOUNTS))
    assert {r[2] for r in interleaved[0]} == {first, second}

    reset_book(book)
    for day in (first, second):
        succeeded(run_dag("daily_performance", day))
    assert interleaved == (book.query(TABLE), book.query(ACCOUNTS))


def test_dates_storing_at_the_same_moment_take_turns_on_the_chain_lock(book: Book) -> None:
    """Two dates' store_day released at once, the later date first in line or not: each waits for
    the chain lock, so the book ends as a sequential run's (rows, cumulative fields, accounts)."""
    import threading

    from investment_jobs.db.connect import connect
    from investment_jobs.jobs import daily
    from investment_jobs.ml_engine.client import MLEngineClient

    days = [date(2026, 1, 3), date(2026, 1, 2), date(2026, 1, 1)]  # the later dates first in line
    runs = [daily.reference_for(day, f"together-{day}") for day in days]
    with connect() as conn, MLEngineClient() as client:
        for run in runs:
            daily.snapshot_active_accounts(conn, run, "UTC")
            daily.pull_performance(conn, client, run, 7)
    outcomes: dict[date, object] = {}

    def store(run) -> None:  # noqa: ANN001
        try:
            with connect() as conn:
                outcomes[run.business_date] = daily.store_day(conn, run, "UTC")
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            outcomes[run.business_date] = exc

    waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
               " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    with connect() as holder:
        holder.execute(daily.CHAIN_LOCK)  # held until every store_day is queued behind it
        threads = []
        for run in runs:
            threads.append(threading.Thread(target=store, args=(run,)))
            threads[-1].start()
            queued = len(threads)
            wait_for(f"{queued} store_day(s) queued on the chain lock",
                     lambda queued=queued: book.query(waiting)[0][0] == queued, timeout=300, every=0.05)
        holder.rollback()
    for thread in threads:
        thread.join(timeout=300)
    assert all(isinstance(outcomes[day], dict) for day in days), outcomes
    with connect() as conn:
        for run in runs:
            daily.drop_staging(conn, run)
    together = (book.query(TABLE), book.query(ACCOUNTS))
    assert {r[2] for r in together[0]} == set(days)

    reset_book(book)
    for day in sorted(days):
        run_day_steps(day)
    assert together == (book.query(TABLE), book.query(ACCOUNTS))


@pytest.mark.parametrize("paging", ["repeat", "cycle", "endless"])
def test_an_engine_whose_cursor_never_ends_fails_the_run_and_writes_nothing_for_d(book: Book, engine, paging) -> None:  # noqa: ANN001
    """Defect 2 of issue 12: a repeated, cycling or endless next_cursor paged into staging forever
    inside one open transaction. It fails the run at once (no retries: the engine would answer the
    same), with nothing written for D, and a stored D stays as it was."""
    succeeded(run_dag("daily_performance", DAY))
    before = book.query(TABLE)
    engine.faults(paging=paging)
    dag_run = run_dag("daily_performance", DAY)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["pull_ml_performance"] == "failed"
    assert book.query(TABLE) == before
    assert book.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'investment_staging'"
                      ) == [(0,)]
    from investment_jobs.ml_engine.client import page_limit

    listings = engine.stats()["requests"].get("/api/v1/performance/daily:200", 0)
    # two runs: the good one, then the bad one, stopped at its page limit (one try: no retry)
    assert listings <= 2 * page_limit(len(active_on(book, DAY)), 7), listings


def test_the_page_limit_can_be_set_and_its_message_names_it(book: Book, engine, monkeypatch, capfd) -> None:  # noqa: ANN001
    monkeypatch.setenv("ML_ENGINE_MAX_PAGES", "2")
    dag_run = run_dag("daily_performance", DAY)  # the book needs 3+ pages of 7
    assert str(dag_run.state) == "failed"
    assert "ML_ENGINE_MAX_PAGES" in capfd.readouterr().out
    assert book.query("SELECT count(*) FROM investment.daily_performance") == [(0,)]


def test_items_that_parse_but_cannot_be_stored_are_each_their_own_reject(book: Book, engine, monkeypatch) -> None:  # noqa: ANN001
    """Defect 5 of issue 12: one item with 1e1000000, a trade count beyond the integer column, a NUL
    or a lone surrogate, a 300,000-digit number or a 3 MB account id failed the whole day with 0
    rows kept. Each is now that item's reject, with a short reason; the good items are stored."""
    monkeypatch.setenv("DAILY_REJECT_TOLERANCE", "10")
    active = sorted(active_on(book, DAY))
    odd = active[:5]
    # The engine lists these five only through the raw (hand-written) JSON below.
    engine.register([{"account_id": a, "opening_balance": "1", "opened_on": "2025-01-01", "closed_on": None,
                      "initial_balance": "1", "trading": False} for a in odd])

    def raw(account: str, **fields: str) -> str:
        base = {"account_id": json.dumps(account), "date": '"2026-01-05"', "opening_balance": '"100.00"',
                "closing_balance": '"101.00"', "daily_return": '"1.00"', "daily_return_percentage": '"1.0"',
                "trades_executed": "3", "winning_trades": "1", "losing_trades": "1", "ml_agent_data": "{}"}
        base.update(fields)
        return "{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}"

    engine.faults(raw_items=[
        raw(odd[0], opening_balance="1e1000000"),
        raw(odd[1], trades_executed="99999999999"),
        raw(odd[2], ml_agent_data='{"note": "a\\u0000b"}'),
        raw(odd[3], ml_agent_data='{"note": "\\ud800"}'),
        raw(odd[4], opening_balance="9" * 300_000),
        raw("x" * 3_000_000),
    ])
    dag_run = run_dag("daily_performance", DAY)
    succeeded(dag_run)
    stored = {r[0] for r in book.query("SELECT account_id::text FROM investment.daily_performance")}
    assert stored == set(active) - set(odd)
    rejects = dict(book.query("SELECT account_id, reason FROM investment.daily_performance_rejects "
                              "WHERE run_id = %s", (dag_run.run_id,)))
    assert "opening_balance: out of range" in rejects[odd[0]]
    assert "trades_executed: out of range" in rejects[odd[1]]
    assert "NUL character" in rejects[odd[2]]
    assert "lone surrogate" in rejects[odd[3]]
    assert "opening_balance" in rejects[odd[4]]
    assert any("account_id is not a UUID" in r for a, r in rejects.items() if a.startswith("xxx"))
    assert all(len(a) <= 65 and len(r) <= 1000 for a, r in rejects.items())
    summary = xcom(dag_run, "summarise")
    assert summary["rejected_count"] == 6
    assert len(json.dumps(summary)) < 20_000


@pytest.mark.parametrize(("zone", "day"), [
    ("America/New_York", date(2026, 3, 8)),   # the day the US clocks go forward
    ("America/New_York", date(2026, 11, 1)),  # and back
    ("Pacific/Honolulu", date(2026, 1, 5)),
    ("Asia/Tokyo", date(2026, 1, 5)),
    ("Pacific/Kiritimati", date(2026, 1, 5)),  # UTC+14: midnight there is the morning before in UTC
])
def test_a_run_for_d_stores_d_in_every_zone(book: Book, monkeypatch, zone: str, day: date) -> None:  # noqa: ANN001
    """Defect 1 of issue 12, for dag.test(): the logical date make job passes for DATE=D (the start of
    D in CRON_TIMEZONE) stores D, not the day before, whichever side of UTC the zone is."""
    from investment_jobs_dev.cli import job_logical_date

    monkeypatch.setenv("CRON_TIMEZONE", zone)
    logical = datetime.fromisoformat(job_logical_date(day, zone))
    succeeded(run_dag("daily_performance", logical))
    assert book.query("SELECT DISTINCT date FROM investment.daily_performance") == [(day,)]


def test_an_item_the_database_refuses_despite_validation_is_rejected_not_the_day(book: Book, monkeypatch) -> None:  # noqa: ANN001
    """The last guard of defect 5 of issue 12: should validation miss a case, the page is copied again
    item by item and the refused item becomes a reject with the database's own reason."""
    import psycopg

    from investment_jobs.jobs import daily
    from investment_jobs.ml_engine.client import MLEngineClient
    from investment_jobs.ml_engine.validation import validate_item

    victim = sorted(active_on(book, DAY))[4]

    def misses_a_case(raw, day):  # noqa: ANN001, ANN202
        result = validate_item(raw, day)
        if getattr(result, "account_id", None) == victim:  # jsonb refuses \u0000: validation "missed" it
            return result._replace(ml_agent_data='{"note": "\\u0000"}')
        return result

    monkeypatch.setattr(daily, "validate_item", misses_a_case)
    run = daily.reference_for(DAY, "refused")
    with psycopg.connect(book.dsn) as conn, MLEngineClient() as client:
        daily.snapshot_active_accounts(conn, run, "UTC")
        pulled = daily.pull_performance(conn, client, run, 7)
        st = daily.staging(run)
        rejects = st.execute(conn, "SELECT account_id, reason FROM {rejects}").fetchall()
        staged = st.count(conn, "items")
        daily.drop_staging(conn, run)
    assert pulled["rejected"] == 1 and pulled["valid"] == staged == len(active_on(book, DAY)) - 1
    assert rejects == [(victim, "the database refused the item: unsupported Unicode escape sequence")]
