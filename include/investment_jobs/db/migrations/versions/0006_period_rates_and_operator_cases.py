"""The fee rate a period was first distributed at, and why a withdrawal request needs an operator.

- ``investment.distribution_rates``: one row per (period, product), written by the first run that
  distributes any account of that product for the period. Later runs of the same period (accounts
  held back and distributed after a backfill) use this rate and fee model, not the product's
  current ones, so one product never has two rates in one month.
- ``withdrawal_requests.operator_case``: what kind of problem ``needs_operator`` describes, so the
  job knows which requests it may still settle and an operator is offered the actions that are
  safe for the case.

Written 2026-12-01.
"""

from alembic import op

revision, down_revision = "0006", "0005"  # the file name starts with the revision

OPERATOR_CASES = ("idempotency_conflict", "payout_mismatch", "balance_uncovered", "payout_unknown",
                  "account_not_payable")


def upgrade() -> None:
    cases = ", ".join(f"'{c}'" for c in OPERATOR_CASES)
    op.execute(
        f"""
        CREATE TABLE investment.distribution_rates (
            period text NOT NULL CHECK (period ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$'),
            product_id uuid NOT NULL REFERENCES investment.products (id),
            performance_fee_percentage NUMERIC(7, 4) NOT NULL
                CHECK (performance_fee_percentage >= 0 AND performance_fee_percentage <= 100),
            fee_model text NOT NULL CHECK (fee_model IN ('simple', 'high_water_mark')),
            fixed_by_run text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (period, product_id)
        );
        -- Periods distributed before this table existed: their rows already say which rate they used.
        INSERT INTO investment.distribution_rates (period, product_id, performance_fee_percentage, fee_model,
                                                   fixed_by_run)
        SELECT DISTINCT ON (period, product_id) period, product_id, performance_fee_percentage, fee_model,
               'migration 0006'
        FROM investment.distributions
        ORDER BY period, product_id, created_at;
        CREATE TRIGGER distribution_rates_set_updated_at BEFORE UPDATE ON investment.distribution_rates
            FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at();

        ALTER TABLE investment.withdrawal_requests
            ADD COLUMN operator_case text CHECK (operator_case IN ({cases}));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE investment.withdrawal_requests DROP COLUMN operator_case;
        DROP TABLE investment.distribution_rates;
        """
    )
