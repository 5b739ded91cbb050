"""Tables of ml_performance_sync: agent snapshots, reconciliation differences, rejected items.

Written 2026-11-25.
"""

from alembic import op

revision, down_revision = "0003", "0002"  # the file name starts with the revision

TIMESTAMPS = """
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE investment.agent_performance (
            agent_id text NOT NULL CHECK (agent_id <> ''),
            product_id uuid NOT NULL REFERENCES investment.products (id),
            date date NOT NULL,
            total_trades integer CHECK (total_trades >= 0),
            win_rate NUMERIC(20, 10),
            pnl NUMERIC(20, 8),
            sharpe_ratio NUMERIC(20, 10),
            max_drawdown NUMERIC(20, 10),
            metrics jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            {TIMESTAMPS},
            PRIMARY KEY (agent_id, date)
        );
        CREATE INDEX agent_performance_product_date_idx ON investment.agent_performance (product_id, date);

        -- The current differences between the engine and the stored days, per reconciled date.
        CREATE TABLE investment.performance_discrepancies (
            account_id uuid NOT NULL,
            date date NOT NULL,
            field text NOT NULL,
            stored_value text,
            engine_value text,
            run_id text NOT NULL,
            {TIMESTAMPS},
            PRIMARY KEY (account_id, date, field)
        );
        CREATE INDEX performance_discrepancies_date_idx ON investment.performance_discrepancies (date);

        CREATE TABLE investment.ml_sync_rejects (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id text NOT NULL,
            date date NOT NULL,
            source text NOT NULL CHECK (source IN ('agents', 'accounts')),
            item_key text NOT NULL,
            reason text NOT NULL,
            item jsonb,
            {TIMESTAMPS}
        );
        CREATE INDEX ml_sync_rejects_run_idx ON investment.ml_sync_rejects (run_id, date);

        CREATE TRIGGER agent_performance_set_updated_at BEFORE UPDATE ON investment.agent_performance
            FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at();
        CREATE TRIGGER performance_discrepancies_set_updated_at
            BEFORE UPDATE ON investment.performance_discrepancies
            FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at();
        CREATE TRIGGER ml_sync_rejects_set_updated_at BEFORE UPDATE ON investment.ml_sync_rejects
            FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at();
        -- Deleting a transaction checks the foreign keys that point at it: index their columns.
        CREATE INDEX distributions_transaction_idx ON investment.distributions (transaction_id);
        CREATE INDEX withdrawal_requests_transaction_idx ON investment.withdrawal_requests (transaction_id);
        CREATE INDEX accounts_status_closed_idx ON investment.accounts (status, closed_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS investment.ml_sync_rejects")
    op.execute("DROP TABLE IF EXISTS investment.performance_discrepancies")
    op.execute("DROP TABLE IF EXISTS investment.agent_performance")
