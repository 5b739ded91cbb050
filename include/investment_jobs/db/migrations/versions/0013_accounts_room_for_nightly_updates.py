"""``accounts`` laid out for the nightly update of every active row.

``daily_performance`` rewrites ``current_balance`` and ``total_return_percentage`` of every active
account each business date: at 100k accounts that UPDATE was 1.2 s of the job, more than the upsert
of the day's rows.

- **Room for HOT updates.** Neither column is indexed, so each new row version can stay on its page
  (a heap-only tuple: no entry in the four indexes) if the page has room for it. Pages filled to 80%
  have room for a quarter of their rows, so three updates in four went through every index. At
  fillfactor 50 a page keeps room for a new version of each of its rows; the old versions are pruned
  the next time the page is read, so every night's update finds the room again. The cost is a table
  twice as large (about 60 MB at 100k accounts, 600 MB at a million), for a table read by key.
  Existing pages keep their fill until they are rewritten; new and updated rows go to pages filled
  to 50%. ``VACUUM FULL investment.accounts`` (an exclusive lock: a maintenance window) lays out all
  of it at once.
- **updated_at without a trigger call per row** where the statement sets it itself: the trigger
  now runs only when ``updated_at`` is left as it was (``WHEN`` is evaluated without calling
  PL/pgSQL), so every other statement still gets its stamp.

Written 2026-12-04.
"""

from alembic import op

revision, down_revision = "0013", "0012"  # the file name starts with the revision


def upgrade() -> None:
    op.execute("ALTER TABLE investment.accounts SET (fillfactor = 50)")
    op.execute("DROP TRIGGER accounts_set_updated_at ON investment.accounts")
    op.execute(
        "CREATE TRIGGER accounts_set_updated_at BEFORE UPDATE ON investment.accounts FOR EACH ROW "
        "WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION investment.set_updated_at()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER accounts_set_updated_at ON investment.accounts")
    op.execute(
        "CREATE TRIGGER accounts_set_updated_at BEFORE UPDATE ON investment.accounts FOR EACH ROW "
        "EXECUTE FUNCTION investment.set_updated_at()"
    )
    op.execute("ALTER TABLE investment.accounts SET (fillfactor = 80)")
