"""A version counter of the stored daily chain, so concurrent daily_performance runs stay exact.

Written 2026-11-27.
"""

from alembic import op

revision, down_revision = "0005", "0004"  # the file name starts with the revision


def upgrade() -> None:
    op.execute(
        """
        -- One row. Every daily_performance persist bumps it under its lock; a run whose
        -- compute_returns read an older version chains D again before writing it.
        CREATE TABLE investment.daily_chain_version (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version bigint NOT NULL DEFAULT 0
        );
        INSERT INTO investment.daily_chain_version DEFAULT VALUES;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE investment.daily_chain_version")
