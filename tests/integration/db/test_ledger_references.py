"""The references of distributions and transactions, checked per statement (migrations 0014, 0016,
0017): what their foreign keys refused is still refused, from both sides, with the same error class."""

from __future__ import annotations

import re
import uuid
from datetime import date

import psycopg
import pytest

from tests.support.airflow_runs import run_dag
from tests.support.book import Book, fill_days

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

Refused = psycopg.errors.ForeignKeyViolation
TRANSACTION = """INSERT INTO investment.transactions (account_id, user_id, type, amount, balance_before, balance_after,
                 distribution_id, status) VALUES (%s, gen_random_uuid(), 'adjustment', 1, 0, 0, %s, 'completed')"""


@pytest.fixture
def distributed(book: Book) -> tuple[Book, str, str, str, str]:
    """January distributed: (book, account, its product, its distribution, that one's transaction)."""
    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    assert str(run_dag("monthly_distribution", date(2026, 1, 1)).state) == "success"
    account, product, distribution, transaction = book.query(
        """SELECT account_id, product_id, id, transaction_id FROM investment.distributions
           WHERE status = 'distributed' ORDER BY account_id LIMIT 1""")[0]
    return book, account, product, distribution, transaction


@pytest.mark.parametrize(("statement", "args", "refusal"), [
    (TRANSACTION, ("unknown", None), "transactions names account .*, which does not exist"),
    (TRANSACTION, ("account", "unknown"), "transactions names distribution .*, which does not exist"),
    ("UPDATE investment.transactions SET account_id = %s WHERE id = %s", ("unknown", "transaction"),
     "transactions names account"),
    ("UPDATE investment.distributions SET account_id = %s WHERE id = %s", ("unknown", "distribution"),
     "distributions names account"),
    ("UPDATE investment.distributions SET product_id = %s WHERE id = %s", ("unknown", "distribution"),
     "distributions names product"),
    ("UPDATE investment.distributions SET transaction_id = %s WHERE id = %s", ("unknown", "distribution"),
     "distributions names transaction .*, which does not exist"),
    ("DELETE FROM investment.distributions WHERE id = %s", ("distribution",), "distribution .* has transactions"),
    ("DELETE FROM investment.transactions WHERE id = %s", ("transaction",), "transaction .* is named by a distribution"),
    ("UPDATE investment.transactions SET id = %s WHERE id = %s", ("unknown", "transaction"),
     "transaction .* is named by a distribution"),
    ("UPDATE investment.accounts SET id = %s WHERE id = %s", ("unknown", "account"), "account .* has"),
])
def test_a_statement_naming_what_does_not_exist_is_refused(distributed, statement: str, args: tuple,
                                                            refusal: str) -> None:
    book, account, product, distribution, transaction = distributed
    named = {"unknown": uuid.uuid4(), "account": account, "product": product, "distribution": distribution,
             "transaction": transaction, None: None}
    with book.connect() as conn, pytest.raises(Refused, match=refusal):
        conn.execute(statement, tuple(named[a] for a in args))


def test_an_account_or_product_with_ledger_rows_is_not_deleted(distributed) -> None:
    book, account, product, _, _ = distributed
    with book.connect() as conn:
        conn.execute("DELETE FROM investment.daily_performance WHERE account_id = %s", (account,))
        with pytest.raises(Refused, match="account .* has distributions"):
            conn.execute("DELETE FROM investment.accounts WHERE id = %s", (account,))
        conn.rollback()
        conn.execute("DELETE FROM investment.daily_performance WHERE product_id = %s", (product,))
        with pytest.raises(Refused, match="product .* has distributions"):
            conn.execute("DELETE FROM investment.products WHERE id = %s", (product,))
        conn.rollback()
        # What exists goes in, and what nothing names goes out.
        conn.execute(TRANSACTION, (account, None))
        unnamed = conn.execute(
            """INSERT INTO investment.accounts (user_id, product_id, status, initial_investment, opened_at)
               VALUES (gen_random_uuid(), %s, 'active', 1, now()) RETURNING id""", (product,)).fetchone()[0]
        assert conn.execute("DELETE FROM investment.accounts WHERE id = %s", (unnamed,)).rowcount == 1


# --- the checks' plans when distributions' statistics say "empty" (migration 0016) -------------
def _check_query(conn: psycopg.Connection, table: str, column: str) -> str:
    """The anti-join that ``table``'s check function runs for ``column``, over a table ``new_rows``."""
    source = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = %s::regprocedure",
                          (f"investment.{table}_check_references()",)).fetchone()[0]
    found = re.search(rf"SELECT n\.{column} INTO missing (FROM new_rows n.*?LIMIT 1);", source, re.S)
    assert found, f"{table}'s check no longer reads {column} as this test expects"
    return f"SELECT n.{column} {found.group(1)}"


def _plan(conn: psycopg.Connection, query: str) -> str:
    return "\n".join(row[0] for row in conn.execute(f"EXPLAIN {query}"))


def test_a_month_retried_after_a_rollback_is_checked_key_by_key(book: Book) -> None:
    """A month rolled back and vacuumed leaves distributions looking empty to the planner. The
    retry's check must still probe each new transaction's distribution by its key: compared against
    the whole table instead, it is quadratic (24k rows: 9.8 s; a million accounts: hours)."""
    account = book.active_ids()[0]
    months = """INSERT INTO investment.distributions (account_id, product_id, user_id, period, period_start,
                    period_end, opening_balance, closing_balance, gross_profit, performance_fee_percentage,
                    performance_fee_amount, net_profit, status)
                SELECT a.id, a.product_id, a.user_id, to_char(m, 'YYYY-MM'), m::date, m::date, 0, 0, 0, 0, 0, 0,
                       'distributed'
                FROM investment.accounts a, generate_series('1000-01-01'::date, '1999-12-01', interval '1 month') m
                WHERE a.id = %s"""
    with book.connect() as conn:
        conn.execute(months, (account,))  # 12,000 distributions, rolled back
        conn.rollback()
        conn.autocommit = True
        conn.execute("VACUUM (TRUNCATE false) investment.distributions")  # counted, pages kept
        conn.autocommit = False
        pages, tuples = conn.execute("""SELECT relpages, reltuples FROM pg_class
                                        WHERE oid = 'investment.distributions'::regclass""").fetchone()
        assert pages > 10 and tuples == 0, (pages, tuples)
        # The retry: the distributions are back, and their transactions are about to be checked.
        conn.execute(months, (account,))
        conn.execute("""CREATE TEMP TABLE new_rows ON COMMIT DROP AS
                        SELECT account_id, product_id, id AS distribution_id, transaction_id
                        FROM investment.distributions""")
        conn.execute("ANALYZE new_rows")
        query = _check_query(conn, "transactions", "distribution_id")
        flattened = _plan(conn, query.replace(" OFFSET 0)", ")"))
        assert "Join Filter: (t.id = n.distribution_id)" in flattened, flattened  # 0014's plan: the whole table
        probed = _plan(conn, query)
        assert "Index Cond: (id = n.distribution_id)" in probed and "Join Filter" not in probed, probed
        # A distribution's transaction, written in the month's statement too, is probed by key (0017).
        by_transaction = _plan(conn, _check_query(conn, "distributions", "transaction_id"))
        assert "Index Cond: (id = n.transaction_id)" in by_transaction, by_transaction
        for table, column in (("transactions", "account_id"), ("distributions", "account_id"),
                              ("distributions", "product_id")):
            assert "Join Filter" not in _plan(conn, _check_query(conn, table, column)), (table, column)
        # And through the trigger: the retry's transactions go in, and a missing distribution is refused.
        conn.execute("DROP TABLE new_rows")
        conn.execute("""INSERT INTO investment.transactions (account_id, user_id, type, amount, distribution_id,
                            status)
                        SELECT account_id, user_id, 'profit_distribution', net_profit, id, 'completed'
                        FROM investment.distributions""")
        with pytest.raises(Refused, match="transactions names distribution"):
            conn.execute(TRANSACTION, (account, uuid.uuid4()))
