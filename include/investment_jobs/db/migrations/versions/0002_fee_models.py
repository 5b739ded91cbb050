"""Fee models per product and the high-water mark per account (monthly_distribution).

- products.fee_model: 'simple' (the original's rule) or 'high_water_mark'.
- accounts.high_water_mark: the cumulative profit level a fee was last charged up to.
- distributions: the fee model, the cumulative return C and the mark before/after, so each
  month's fee can be re-derived from its own row.

Written 2026-11-25.
"""

from alembic import op

revision, down_revision = "0002", "0001"  # the file name starts with the revision


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE investment.products
            ADD COLUMN fee_model text NOT NULL DEFAULT 'simple'
                CHECK (fee_model IN ('simple', 'high_water_mark'));
        ALTER TABLE investment.accounts
            ADD COLUMN high_water_mark NUMERIC(24, 8) NOT NULL DEFAULT 0;
        ALTER TABLE investment.distributions
            ADD COLUMN fee_model text NOT NULL DEFAULT 'simple'
                CHECK (fee_model IN ('simple', 'high_water_mark')),
            ADD COLUMN cumulative_return NUMERIC(24, 8),
            ADD COLUMN high_water_mark_before NUMERIC(24, 8),
            ADD COLUMN high_water_mark_after NUMERIC(24, 8),
            ADD CONSTRAINT distributions_fee_and_net_add_up
                CHECK (status <> 'distributed' OR performance_fee_amount + net_profit = gross_profit),
            ADD CONSTRAINT distributions_no_profit_pays_nothing
                CHECK (status <> 'no_profit' OR (gross_profit <= 0 AND performance_fee_amount = 0
                                                 AND net_profit = 0));
        CREATE INDEX distributions_period_idx ON investment.distributions (period);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS investment.distributions_period_idx;
        ALTER TABLE investment.distributions
            DROP CONSTRAINT IF EXISTS distributions_no_profit_pays_nothing,
            DROP CONSTRAINT IF EXISTS distributions_fee_and_net_add_up,
            DROP COLUMN IF EXISTS high_water_mark_after,
            DROP COLUMN IF EXISTS high_water_mark_before,
            DROP COLUMN IF EXISTS cumulative_return,
            DROP COLUMN IF EXISTS fee_model;
        ALTER TABLE investment.accounts DROP COLUMN IF EXISTS high_water_mark;
        ALTER TABLE investment.products DROP COLUMN IF EXISTS fee_model;
        """
    )
