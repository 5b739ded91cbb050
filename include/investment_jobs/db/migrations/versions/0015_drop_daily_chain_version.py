"""Drop ``investment.daily_chain_version``: nothing reads it since daily_performance stores a day in
one task.

Migration 0005 made it so that a date written between another date's compute_returns and persist
(two tasks, two transactions) made persist chain its date again. ``store_day`` now matches, chains,
writes D and moves the accounts in one transaction under the chain lock, so no date can be written
in between and there is nothing to detect. A run of the old task shape cannot outlive the DAG
file that had those tasks; should one be in flight at the deployment, it fails and D is rerun
(reruns are safe).

Written 2026-12-07.
"""

from alembic import op

revision, down_revision = "0015", "0014"  # the file name starts with the revision


def upgrade() -> None:
    op.execute("DROP TABLE investment.daily_chain_version")


def downgrade() -> None:
    op.execute(
        """
        CREATE TABLE investment.daily_chain_version (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version bigint NOT NULL DEFAULT 0
        );
        INSERT INTO investment.daily_chain_version DEFAULT VALUES;
        """
    )
