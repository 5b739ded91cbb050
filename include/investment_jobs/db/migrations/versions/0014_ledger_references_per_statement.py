"""The references of ``distributions`` and ``transactions`` checked once per statement.

``monthly_distribution`` writes a whole month in one statement: at 100k accounts, 92k distributions
and 77k ``profit_distribution`` transactions, and PostgreSQL checked their four foreign keys row by
row (a trigger call, a key lookup and a row lock each: 1.1 s of the 3.1 s statement). The same rule
now holds as migration 0012 made it hold for ``daily_performance``: one anti-join per statement over
its new rows (AFTER … FOR EACH STATEMENT with a transition table), and from the other side a row
trigger refuses to delete (or re-key) an account, a product or a distribution that those rows
name. The two sides take one advisory lock (shared by the writers, exclusive by a deletion), so a
deletion and a write cannot pass each other.

- ``distributions.account_id`` → ``accounts``, ``distributions.product_id`` → ``products``
- ``transactions.account_id`` → ``accounts``, ``transactions.distribution_id`` → ``distributions``

The other references (``transaction_id`` both ways, the withdrawal request's, the corrections')
stay foreign keys: they are written a row at a time, or checked cheaply (a NULL is not looked up).

Written 2026-12-07.
"""

from alembic import op

revision, down_revision = "0014", "0013"  # the file name starts with the revision

LOCK = "hashtext('investment.ledger references')"
DROPPED = (
    ("distributions", "distributions_account_id_fkey", "account_id", "accounts"),
    ("distributions", "distributions_product_id_fkey", "product_id", "products"),
    ("transactions", "transactions_account_id_fkey", "account_id", "accounts"),
    ("transactions", "transactions_distribution_id_fkey", "distribution_id", "distributions"),
)


def _check(table: str, references: list[tuple[str, str]]) -> str:
    """The statement trigger's function for ``table``: each named key must exist."""
    checks = "".join(f"""
        SELECT n.{column} INTO missing FROM new_rows n
        WHERE n.{column} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM investment.{target} t WHERE t.id = n.{column}) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '{table} names {target[:-1]} %, which does not exist', missing.{column}
                USING ERRCODE = 'foreign_key_violation';
        END IF;""" for column, target in references)
    return f"""
    CREATE FUNCTION investment.{table}_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing record;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared({LOCK});{checks}
        RETURN NULL;
    END $$;
""" + "".join(f"""
    CREATE TRIGGER {table}_references_{done} AFTER {event} ON investment.{table}
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
        EXECUTE FUNCTION investment.{table}_check_references();
""" for done, event in (("inserted", "INSERT"), ("updated", "UPDATE")))


# An account is found by the leading column of an index on each side; a product's distributions
# and a distribution's transactions by reading the table: neither is deleted in business.
REFUSE = f"""
    CREATE FUNCTION investment.refuse_removing_what_ledger_rows_name() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK});
        IF TG_TABLE_NAME = 'accounts' THEN
            IF EXISTS (SELECT 1 FROM investment.distributions d WHERE d.account_id = OLD.id) THEN
                RAISE EXCEPTION 'account % has distributions', OLD.id USING ERRCODE = 'foreign_key_violation';
            END IF;
            IF EXISTS (SELECT 1 FROM investment.transactions t WHERE t.account_id = OLD.id) THEN
                RAISE EXCEPTION 'account % has transactions', OLD.id USING ERRCODE = 'foreign_key_violation';
            END IF;
        ELSIF TG_TABLE_NAME = 'products'
              AND EXISTS (SELECT 1 FROM investment.distributions d WHERE d.product_id = OLD.id) THEN
            RAISE EXCEPTION 'product % has distributions', OLD.id USING ERRCODE = 'foreign_key_violation';
        ELSIF TG_TABLE_NAME = 'distributions'
              AND EXISTS (SELECT 1 FROM investment.transactions t WHERE t.distribution_id = OLD.id) THEN
            RAISE EXCEPTION 'distribution % has transactions', OLD.id USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END $$;
""" + "".join(f"""
    CREATE TRIGGER {table}_named_by_ledger_rows BEFORE DELETE ON investment.{table}
        FOR EACH ROW EXECUTE FUNCTION investment.refuse_removing_what_ledger_rows_name();
    CREATE TRIGGER {table}_rekeyed_named_by_ledger_rows BEFORE UPDATE OF id ON investment.{table}
        FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
        EXECUTE FUNCTION investment.refuse_removing_what_ledger_rows_name();
""" for table in ("accounts", "products", "distributions"))


def upgrade() -> None:
    for table, constraint, _, _ in DROPPED:
        op.execute(f"ALTER TABLE investment.{table} DROP CONSTRAINT {constraint}")
    op.execute(_check("distributions", [("account_id", "accounts"), ("product_id", "products")]))
    op.execute(_check("transactions", [("account_id", "accounts"), ("distribution_id", "distributions")]))
    op.execute(REFUSE)


def downgrade() -> None:
    for table in ("accounts", "products", "distributions"):
        op.execute(f"DROP TRIGGER {table}_named_by_ledger_rows ON investment.{table}")
        op.execute(f"DROP TRIGGER {table}_rekeyed_named_by_ledger_rows ON investment.{table}")
    op.execute("DROP FUNCTION investment.refuse_removing_what_ledger_rows_name()")
    for table in ("distributions", "transactions"):
        op.execute(f"DROP FUNCTION investment.{table}_check_references() CASCADE")  # and its two triggers
    for table, constraint, column, target in DROPPED:
        op.execute(f"ALTER TABLE investment.{table} ADD CONSTRAINT {constraint} "
                   f"FOREIGN KEY ({column}) REFERENCES investment.{target} (id)")
