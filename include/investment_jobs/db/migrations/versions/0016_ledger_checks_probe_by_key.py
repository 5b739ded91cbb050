"""The ledger reference checks (migration 0014) probe each new row's key, whatever the statistics
say.

A month that is distributed and rolled back (a crash, an approval that no longer matches) leaves
``distributions`` with pages of dead rows. When vacuum has counted them but could not cut the
pages off (truncation needs a lock that a waiting retry holds), the table has ``relpages > 0`` and
``reltuples = 0``: the planner takes it for empty. The retry's check of its new ``transactions``
then ran ``NOT EXISTS (… distributions …)`` as a nested loop whose inner side is the whole table
(a materialised seq or index scan), compared row by row: 24k × 24k took 9.8 s, and 770k × 1.8M at
a million accounts was still running after 7 minutes (it would have taken hours).

``OFFSET 0`` keeps each ``NOT EXISTS`` a subplan run per new row with that row's key, so the only
choice left to the planner is how to read one key: by the primary key, or by scanning the table,
whose cost it takes from the table's present size, never from stale statistics. That is the work
the foreign keys did before 0014 (one probe per row), without their trigger call and row lock; it
grows with the month's rows, not with the ledger's history, as a hash anti-join over all
distributions would.

``daily_performance``'s check (migration 0012) is left as it is: its targets, accounts and
products, are not written by the job whose statement is checked, so that job's rollback cannot
empty their statistics.

Written 2026-12-07.
"""

from alembic import op

revision, down_revision = "0016", "0015"  # the file name starts with the revision

REFERENCES = {
    "distributions": (("account_id", "accounts"), ("product_id", "products")),
    "transactions": (("account_id", "accounts"), ("distribution_id", "distributions")),
}


def _check(table: str, fence: str) -> str:
    """``table``'s statement check (as 0014 wrote it), its ``NOT EXISTS`` ended by ``fence``."""
    checks = "".join(f"""
        SELECT n.{column} INTO missing FROM new_rows n
        WHERE n.{column} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM investment.{target} t WHERE t.id = n.{column}{fence}) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION '{table} names {target[:-1]} %, which does not exist', missing.{column}
                USING ERRCODE = 'foreign_key_violation';
        END IF;""" for column, target in REFERENCES[table])
    return f"""
    CREATE OR REPLACE FUNCTION investment.{table}_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing record;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtext('investment.ledger references'));{checks}
        RETURN NULL;
    END $$;
"""


def upgrade() -> None:
    for table in REFERENCES:
        op.execute(_check(table, " OFFSET 0"))  # a subplan per row: not flattened into a join


def downgrade() -> None:
    for table in REFERENCES:
        op.execute(_check(table, ""))
