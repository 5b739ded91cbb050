"""The soak's invariants on a real book: they hold after real runs (two business dates stored by
daily_performance, a withdrawal paid through the Stripe stand-in), and each one names what breaks
it when a row is planted that breaks it. A check that could not fail would prove nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from investment_jobs_dev.soak import invariants
from tests.support.airflow_runs import run_dag
from tests.support.withdrawals import accounts_by_currency, add_request

pytestmark = pytest.mark.integration

DAYS = [date(2026, 1, 5), date(2026, 1, 6)]
ENGINE_SEED = 7  # the tests' engine stand-in serves its default seed


@pytest.fixture
def operated(book, stripe_standin, airflow_db):  # noqa: ANN001, ANN201
    """Two stored days and one paid withdrawal; returns (book, stripe stand-in, the request id)."""
    for day in DAYS:
        assert str(run_dag("daily_performance", day).state) == "success"
    account = accounts_by_currency(book)["usd"][0]
    request = add_request(book, account, "12.34")
    assert str(run_dag("withdrawal_processing", datetime(2026, 1, 6, 12, tzinfo=UTC)).state) == "success"
    return book, stripe_standin, request


def all_checks(book, stripe_payouts: list[dict]) -> dict[str, invariants.Check]:  # noqa: ANN001
    with book.connect() as conn:
        accounts = invariants.engine_accounts(conn)
        checks = [invariants.payouts_once(conn, stripe_payouts),
                  invariants.requests_settled(conn, stripe_payouts, during=False),
                  invariants.ledger(conn),
                  *invariants.daily_rows(conn, ENGINE_SEED, accounts, DAYS, during=False),
                  invariants.distributions(conn, ["2025-12", "2026-01"]),
                  invariants.no_staging_left(conn)]
    return {c.name: c for c in checks}


def violations(checks: dict[str, invariants.Check]) -> dict[str, list[str]]:
    return {name: c.violations for name, c in checks.items() if c.violations}


def test_the_invariants_hold_after_real_runs(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    checks = all_checks(book, stripe.payouts())
    assert violations(checks) == {}
    # (no month is distributed here: test_a_fee_unlike_its_recomputation_is_named checks that one)
    looked_at = {n: c.checked for n, c in checks.items() if not n.startswith("one distribution")}
    assert all(looked_at.values()), looked_at


def planted(book, sql: str, params: tuple = ()) -> None:  # noqa: ANN001
    with book.connect() as conn:
        conn.execute(sql, params)


def test_a_second_payout_for_one_request_is_named(operated) -> None:  # noqa: ANN001
    book, stripe, request = operated
    payouts = stripe.payouts()
    twice = [*payouts, {**payouts[0], "id": "po_planted_twice"}]
    found = violations(all_checks(book, twice))
    assert list(found) == ["every payout made once and matched to exactly one request"] or \
        set(found) == {"every payout made once and matched to exactly one request",
                       "completed requests paid at Stripe; none left processing without a reason"}
    assert any(f"request {request} has 2 payouts" in v for v in found[next(iter(found))])


def test_a_daily_row_unlike_the_engines_and_a_broken_chain_are_named(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    account = book.active_ids()[0]
    planted(book, """UPDATE investment.daily_performance SET closing_balance = closing_balance + 1
                     WHERE account_id = %s AND date = %s""", (account, DAYS[0]))
    planted(book, """UPDATE investment.daily_performance SET cumulative_return = cumulative_return + 0.01
                     WHERE account_id = %s AND date = %s""", (account, DAYS[1]))
    found = violations(all_checks(book, stripe.payouts()))
    values = found.pop("daily rows: one per (account, date), each equal to the engine's own data")
    chained = found.pop("cumulative return fields equal a recomputation from the daily rows")
    assert len(values) == 1 and values[0].startswith(f"{account} {DAYS[0]}: stored (")
    # the planted close breaks D1's chain too? No: the chain is of returns, and D2's sum is off by 0.01
    assert len(chained) == 1 and chained[0].startswith(f"{account} {DAYS[1]}: cumulative (")
    # the balance follows the newest close, which the plant did not touch
    assert found == {}


def test_a_missing_day_is_named_once_the_faults_have_stopped(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    account = book.active_ids()[1]
    planted(book, "DELETE FROM investment.daily_performance WHERE account_id = %s AND date = %s", (account, DAYS[1]))
    with book.connect() as conn:
        accounts = invariants.engine_accounts(conn)
        during = invariants.daily_rows(conn, ENGINE_SEED, accounts, DAYS, during=True)[0]
        after = invariants.daily_rows(conn, ENGINE_SEED, accounts, DAYS, during=False)[0]
    assert during.violations == []
    assert after.violations == [f"{account} {DAYS[1]}: the engine lists it, nothing stored"]


def test_money_that_moved_without_its_transaction_is_named(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    account = book.active_ids()[2]
    planted(book, "UPDATE investment.accounts SET current_balance = current_balance - 5 WHERE id = %s", (account,))
    found = violations(all_checks(book, stripe.payouts()))
    assert list(found) == ["each account's balance movements equal the sum of its transactions"]
    assert len(found[next(iter(found))]) == 1 and f"account {account}: balance" in found[next(iter(found))][0]


def test_a_request_left_processing_without_a_reason_is_named(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    account = accounts_by_currency(book)["eur"][0]
    stuck = add_request(book, account, "5.00")
    planted(book, """UPDATE investment.withdrawal_requests SET status = 'processing', currency = 'eur',
                     payout_amount_minor = 500, claimed_at = now() WHERE id = %s""", (stuck,))
    found = violations(all_checks(book, stripe.payouts()))
    assert found == {"completed requests paid at Stripe; none left processing without a reason": [
        f"request {stuck} is still processing with no reason recorded"]}


def test_a_distribution_unlike_its_recomputation_and_a_staging_table_are_named(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    account = book.active_ids()[0]
    with book.connect() as conn:
        product, user, rate = conn.execute(
            """SELECT a.product_id, a.user_id, p.performance_fee_percentage FROM investment.accounts a
               JOIN investment.products p ON p.id = a.product_id WHERE a.id = %s""", (account,)).fetchone()
        gross = conn.execute("""SELECT sum(daily_return) FROM investment.daily_performance
                                WHERE account_id = %s AND date BETWEEN '2026-01-01' AND '2026-01-31'""",
                             (account,)).fetchone()[0]
        conn.execute(
            """INSERT INTO investment.distributions (account_id, product_id, user_id, period, period_start, period_end,
                   opening_balance, closing_balance, gross_profit, performance_fee_percentage, performance_fee_amount,
                   net_profit, status)
               VALUES (%s, %s, %s, '2026-01', '2026-01-01', '2026-01-31', 0, 0, %s, %s, 0, %s, 'distributed')""",
            (account, product, user, abs(gross) + 1, rate, abs(gross) + 1))
        conn.execute("CREATE TABLE investment_staging.left_behind (x int)")
    found = violations(all_checks(book, stripe.payouts()))
    assert set(found) == {"one distribution per (account, month), equal to a recomputation",
                          "no staging table left behind"}
    assert found["one distribution per (account, month), equal to a recomputation"] == [
        f"{account} 2026-01: gross {abs(gross) + 1}, its daily rows sum to {gross}"]
    assert found["no staging table left behind"] == ["investment_staging.left_behind is still there"]


def test_a_fee_unlike_its_recomputation_is_named(operated) -> None:  # noqa: ANN001
    book, stripe, _ = operated
    account = accounts_by_currency(book)["usd"][1][0]
    with book.connect() as conn:
        product, user, rate = conn.execute(
            """SELECT a.product_id, a.user_id, p.performance_fee_percentage FROM investment.accounts a
               JOIN investment.products p ON p.id = a.product_id WHERE a.id = %s""", (account,)).fetchone()
        conn.execute("""UPDATE investment.daily_performance SET daily_return = 100, cumulative_return = 0
                        WHERE account_id = %s""", (account,))
        conn.execute(
            """INSERT INTO investment.distributions (account_id, product_id, user_id, period, period_start, period_end,
                   opening_balance, closing_balance, gross_profit, performance_fee_percentage, performance_fee_amount,
                   net_profit, status)
               VALUES (%s, %s, %s, '2026-01', '2026-01-01', '2026-01-31', 0, 0, 200, %s, 1, 199, 'distributed')""",
            (account, product, user, rate))
    with book.connect() as conn:
        check = invariants.distributions(conn, ["2026-01"])
    expected_fee = (Decimal(200) * rate / 100).quantize(Decimal("0.01"))  # usd: cents
    assert len(check.violations) == 1, check.violations
    assert check.violations[0].startswith(f"{account} 2026-01: (distributed, fee 1")
    assert f"recomputed ('distributed', Decimal('{expected_fee}'), " in check.violations[0]


def test_a_payout_returned_after_it_was_paid_waits_for_the_next_settle_only_while_faults_last(operated) -> None:  # noqa: ANN001
    book, stripe, request = operated
    payout = next(p for p in stripe.payouts() if p["metadata"]["withdrawal_request_id"] == request)
    stripe.set_payout(payout["id"], status="failed", failure_code="account_closed")
    with book.connect() as conn:
        during = invariants.requests_settled(conn, stripe.payouts(), during=True)
        after = invariants.requests_settled(conn, stripe.payouts(), during=False)
    assert during.violations == []
    assert after.violations == [f"request {request} completed; Stripe's payout is failed for {payout['amount']}"]
