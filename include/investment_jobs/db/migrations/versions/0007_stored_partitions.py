"""Which business dates and periods are stored: the partitions the jobs have completed.

One row per (asset, partition key), written by the run that completed it (daily_performance for D
once D's rows are stored and its run succeeded, monthly_distribution for P once every account of
P is distributed), beside the Airflow asset event the same task emits. It lets whatever runs
without Airflow's metadata (a deadline's callback on a worker) say which days are missing.

Written 2026-12-02.
"""

from alembic import op

revision, down_revision = "0007", "0006"  # the file name starts with the revision


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE investment.stored_partitions (
            asset text NOT NULL CHECK (asset IN ('daily_performance', 'distributions')),
            partition_key text NOT NULL,
            run_id text NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (asset, partition_key)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE investment.stored_partitions")
