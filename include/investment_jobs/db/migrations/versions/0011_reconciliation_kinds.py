"""A reconciliation difference is never of kind ``balance_change``: the day's balance change is a
figure of the reconciliation (``stripe_reconciliations.balance_change``), not a difference, and no
code writes that kind. The CHECK now names only the kinds that are written, so a row with a kind
nobody reads cannot appear.

Written 2026-12-03.
"""

from alembic import op

revision, down_revision = "0011", "0010"  # the file name starts with the revision

WRITTEN = "'missing_in_database', 'missing_at_stripe', 'amount', 'currency', 'status', 'ledger'"


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE investment.stripe_reconciliation_differences
            DROP CONSTRAINT stripe_reconciliation_differences_kind_check,
            ADD CONSTRAINT stripe_reconciliation_differences_kind_check CHECK (kind IN ({WRITTEN}));
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE investment.stripe_reconciliation_differences
            DROP CONSTRAINT stripe_reconciliation_differences_kind_check,
            ADD CONSTRAINT stripe_reconciliation_differences_kind_check
                CHECK (kind IN ({WRITTEN}, 'balance_change'));
        """
    )
