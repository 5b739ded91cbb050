"""The ledger check of ``transactions`` (migration 0014) probes each new row's distribution by its
key, whatever the statistics say.

A month that is distributed and rolled back (a crash, an approval that no longer matches) leaves
``distributions`` with pages of dead rows. When vacuum has counted them but not cut the pages
off (it skips the truncation when it cannot take the table's exclusive lock at once), the table has
``relpages > 0`` and ``reltuples = 0``: the planner takes it for empty. The retry's check of its new ``transactions``
then ran ``NOT EXISTS (… distributions …)`` as a nested loop whose inner side is the whole table
(a materialised seq or index scan), compared row by row: 24k × 24k took 9.8 s, and 770k × 1.8M at
a million accounts was still running after 7 minutes (it would have taken hours).

``OFFSET 0`` keeps that ``NOT EXISTS`` a subplan run per new row with that row's key, so the
only choice left to the planner is how to read one key: by the primary key, or by scanning the
table, whose cost it takes from the table's present size, never from stale statistics. That is the
plan it picks anyway with true statistics (at 100k and at 1M accounts, 1.9–2.0 s either way for
770k rows), and it grows with the month's rows, not with the ledger's history, as a hash anti-join
over all distributions would.

Only that reference is fenced: the other checks' targets, accounts and products, are not written
by the statement being checked (a rollback of the month cannot empty their statistics), and for
products the planner's hash anti-join is 5× faster than a probe per row (0.08 s against 0.43 s
for 770k rows). ``daily_performance``'s check (migration 0012) is left as it is for the same reason.

Written 2026-12-07.
"""

from alembic import op

revision, down_revision = "0016", "0015"  # the file name starts with the revision

# transactions' references, each with what ends its NOT EXISTS after the upgrade
REFERENCES = (("account_id", "accounts", ""), ("distribution_id", "distributions", " OFFSET 0"))


def _check(fenced: bool) -> str:
    """The transactions' statement check as 0014 wrote it, ``fenced`` or not."""
    checks = "".join(f"""
        SELECT n.{column} INTO missing FROM new_rows n
        WHERE n.{column} IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM investment.{target} t WHERE t.id = n.{column}{fence if fenced else ""}) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'transactions names {target[:-1]} %, which does not exist', missing.{column}
                USING ERRCODE = 'foreign_key_violation';
        END IF;""" for column, target, fence in REFERENCES)
    return f"""
    CREATE OR REPLACE FUNCTION investment.transactions_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        missing record;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtext('investment.ledger references'));{checks}
        RETURN NULL;
    END $$;
"""


def upgrade() -> None:
    op.execute(_check(fenced=True))  # a subplan per row: not flattened into a join


def downgrade() -> None:
    op.execute(_check(fenced=False))
