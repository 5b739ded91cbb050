"""A distribution's ``transaction_id`` checked once per statement, as its other references are
(migration 0014), instead of by a deferred foreign key at commit.

``monthly_distribution`` writes a month's distributions and their ``profit_distribution``
transactions in one statement. The foreign key ``distributions_transaction_fk`` (deferred, so that
a distribution can be written before its transaction) then checked each of them at commit, row by
row, with a key-share lock on each transaction: 5–7 s of the month's write at a million accounts
(770k transactions), after a 45–47 s statement. Now ``distributions``' statement check (0014)
also probes each new row's transaction by its key. It runs at the end of the statement, after
every part of it, so the distribution may still come first within one statement; a distribution
that names a transaction written only by a later statement is now refused (nothing does that).
The probe is fenced (``OFFSET 0``, as 0016 did for a transaction's distribution): the month
writes ``transactions`` in the same statement, so a rolled-back month can leave its statistics
looking empty.

From the other side, a transaction that a distribution names is not deleted (one anti-join per
statement over the deleted rows: ``data_cleanup`` deletes in batches) or re-keyed (a row trigger
that only an update of ``id`` fires), under the ledger references' advisory lock, with the same
error class (``foreign_key_violation``).

Written 2026-12-08.
"""

from alembic import op

revision, down_revision = "0017", "0016"  # the file name starts with the revision

LOCK = "hashtext('investment.ledger references')"


def _distributions_check(with_transaction: bool) -> str:
    references = [("account_id", "accounts", ""), ("product_id", "products", "")]
    if with_transaction:
        references.append(("transaction_id", "transactions", " OFFSET 0"))
    checks = "".join(f"""
        SELECT n.{column} INTO missing FROM new_rows n
        WHERE n.{column} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM investment.{target} t WHERE t.id = n.{column}{fence}) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'distributions names {target[:-1]} %, which does not exist', missing.{column}
                USING ERRCODE = 'foreign_key_violation';
        END IF;""" for column, target, fence in references)
    return f"""
    CREATE OR REPLACE FUNCTION investment.distributions_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing record;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared({LOCK});{checks}
        RETURN NULL;
    END $$;
"""


REFUSE = f"""
    CREATE FUNCTION investment.refuse_removing_transactions_that_distributions_name() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        named record;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK});
        IF TG_LEVEL = 'ROW' THEN  -- a re-key
            SELECT OLD.id INTO named
            WHERE EXISTS (SELECT 1 FROM investment.distributions d WHERE d.transaction_id = OLD.id);
        ELSE                      -- a statement's deleted rows
            SELECT o.id INTO named FROM old_rows o
            WHERE EXISTS (SELECT 1 FROM investment.distributions d WHERE d.transaction_id = o.id) LIMIT 1;
        END IF;
        IF FOUND THEN
            RAISE EXCEPTION 'transaction % is named by a distribution', named.id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF TG_LEVEL = 'ROW' THEN
            RETURN NEW;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER transactions_deleted_named_by_distributions AFTER DELETE ON investment.transactions
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
        EXECUTE FUNCTION investment.refuse_removing_transactions_that_distributions_name();
    CREATE TRIGGER transactions_rekeyed_named_by_distributions BEFORE UPDATE OF id ON investment.transactions
        FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
        EXECUTE FUNCTION investment.refuse_removing_transactions_that_distributions_name();
"""


def upgrade() -> None:
    op.execute("ALTER TABLE investment.distributions DROP CONSTRAINT distributions_transaction_fk")
    op.execute(_distributions_check(with_transaction=True))
    op.execute(REFUSE)


def downgrade() -> None:
    op.execute("DROP FUNCTION investment.refuse_removing_transactions_that_distributions_name() CASCADE")
    op.execute(_distributions_check(with_transaction=False))
    op.execute("""ALTER TABLE investment.distributions ADD CONSTRAINT distributions_transaction_fk
                  FOREIGN KEY (transaction_id) REFERENCES investment.transactions (id) DEFERRABLE INITIALLY DEFERRED""")
