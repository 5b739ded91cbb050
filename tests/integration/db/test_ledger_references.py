"""The references of distributions and transactions, checked per statement (migration 0014): what
their foreign keys refused is still refused, from both sides, with the same error class."""

from __future__ import annotations

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
    ("DELETE FROM investment.distributions WHERE id = %s", ("distribution",), "distribution .* has transactions"),
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
