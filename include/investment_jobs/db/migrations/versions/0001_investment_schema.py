"""Schema ``investment``: the six tables of contracts.md, the daily rejects, and the TWR chain.

Money is NUMERIC(20, 8): engine amounts carry up to 8 decimals and are stored exactly as sent.
Percentages are NUMERIC(20, 10). Every table has created_at/updated_at, kept by one trigger.

Written 2026-11-25.
"""

from alembic import op

revision, down_revision = "0001", None  # the file name starts with the revision

MONEY = "NUMERIC(20, 8)"
PERCENT = "NUMERIC(20, 10)"
TIMESTAMPS = """
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
"""
TABLES = (
    "products",
    "accounts",
    "daily_performance",
    "distributions",
    "transactions",
    "withdrawal_requests",
    "daily_performance_rejects",
)


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS investment")
    op.execute("CREATE SCHEMA IF NOT EXISTS investment_staging")
    op.execute(
        """
        CREATE FUNCTION investment.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$;

        -- Banker's rounding for NUMERIC (round() rounds half away from zero).
        CREATE FUNCTION investment.round_half_even(v numeric, places integer) RETURNS numeric
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT CASE
                WHEN abs(round(v, places) - v) = 5 * power(10::numeric, -(places + 1))
                     AND mod(round(v, places) * power(10::numeric, places), 2) <> 0
                THEN round(round(v, places) - sign(v) * power(10::numeric, -places), places)
                ELSE round(v, places)
            END
        $$;

        -- One day chained into a time-weighted return, in percent, rounded to 10 decimals
        -- half-even at every step. Mirrors investment_jobs.money.twr_step exactly.
        CREATE FUNCTION investment.twr_step(previous_pct numeric, daily_pct numeric) RETURNS numeric
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT investment.round_half_even((100 + previous_pct) * (100 + daily_pct) * 0.01 - 100, 10)
        $$;

        -- Aggregate state step: start from seed_pct (the chain before the window), then chain.
        CREATE FUNCTION investment.twr_chain_sfunc(state numeric, seed_pct numeric, daily_pct numeric)
        RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT investment.twr_step(coalesce(state, seed_pct, 0), daily_pct)
        $$;

        CREATE AGGREGATE investment.twr_chain(seed_pct numeric, daily_pct numeric) (
            SFUNC = investment.twr_chain_sfunc,
            STYPE = numeric
        );
        """
    )

    op.execute(
        f"""
        CREATE TABLE investment.products (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL,
            currency text NOT NULL DEFAULT 'usd' CHECK (currency ~ '^[a-z]{{3}}$'),
            performance_fee_percentage NUMERIC(7, 4) NOT NULL DEFAULT 0
                CHECK (performance_fee_percentage >= 0 AND performance_fee_percentage <= 100),
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'closed')),
            {TIMESTAMPS}
        );

        CREATE TABLE investment.accounts (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id uuid NOT NULL,
            product_id uuid NOT NULL REFERENCES investment.products (id),
            status text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'suspended', 'closed', 'archived')),
            initial_investment {MONEY} NOT NULL CHECK (initial_investment >= 0),
            current_balance {MONEY} NOT NULL DEFAULT 0 CHECK (current_balance >= 0),
            total_return_percentage {PERCENT} NOT NULL DEFAULT 0,
            total_profit_distributed {MONEY} NOT NULL DEFAULT 0,
            total_withdrawn {MONEY} NOT NULL DEFAULT 0 CHECK (total_withdrawn >= 0),
            opened_at timestamptz NOT NULL,
            closed_at timestamptz,
            {TIMESTAMPS},
            CONSTRAINT accounts_closed_at_after_opened CHECK (closed_at IS NULL OR closed_at >= opened_at),
            CONSTRAINT accounts_closed_status_has_closed_at
                CHECK ((status IN ('closed', 'archived')) = (closed_at IS NOT NULL))
        ) WITH (fillfactor = 80);  -- room for HOT updates of the balances, every night
        CREATE INDEX accounts_product_id_idx ON investment.accounts (product_id);
        CREATE INDEX accounts_user_id_idx ON investment.accounts (user_id);

        CREATE TABLE investment.daily_performance (
            account_id uuid NOT NULL REFERENCES investment.accounts (id),
            product_id uuid NOT NULL REFERENCES investment.products (id),
            date date NOT NULL,
            opening_balance {MONEY} NOT NULL CHECK (opening_balance >= 0),
            closing_balance {MONEY} NOT NULL CHECK (closing_balance >= 0),
            daily_return {MONEY} NOT NULL,
            daily_return_percentage {PERCENT} NOT NULL CHECK (daily_return_percentage > -100),
            cumulative_return NUMERIC(24, 8) NOT NULL,
            cumulative_return_percentage {PERCENT} NOT NULL,
            trades_executed integer NOT NULL CHECK (trades_executed >= 0),
            winning_trades integer NOT NULL CHECK (winning_trades >= 0),
            losing_trades integer NOT NULL CHECK (losing_trades >= 0),
            ml_agent_data jsonb,
            {TIMESTAMPS},
            PRIMARY KEY (account_id, date),
            CONSTRAINT daily_performance_trades_add_up
                CHECK (winning_trades + losing_trades <= trades_executed)
        );
        CREATE INDEX daily_performance_date_idx ON investment.daily_performance (date);

        CREATE TABLE investment.withdrawal_requests (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES investment.accounts (id),
            user_id uuid NOT NULL,
            amount {MONEY} NOT NULL CHECK (amount > 0),
            withdrawal_method text NOT NULL CHECK (withdrawal_method IN ('stripe_payout', 'bank_transfer')),
            destination_details jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN
                ('pending', 'approved', 'processing', 'completed', 'rejected', 'failed')),
            rejection_reason text,
            processed_at timestamptz,
            transaction_id uuid,
            {TIMESTAMPS}
        );
        CREATE INDEX withdrawal_requests_status_idx ON investment.withdrawal_requests (status);
        CREATE INDEX withdrawal_requests_account_idx ON investment.withdrawal_requests (account_id);

        CREATE TABLE investment.distributions (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES investment.accounts (id),
            product_id uuid NOT NULL REFERENCES investment.products (id),
            user_id uuid NOT NULL,
            period text NOT NULL CHECK (period ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$'),
            period_start date NOT NULL,
            period_end date NOT NULL,
            opening_balance {MONEY} NOT NULL,
            closing_balance {MONEY} NOT NULL,
            gross_profit {MONEY} NOT NULL,
            performance_fee_percentage NUMERIC(7, 4) NOT NULL,
            performance_fee_amount {MONEY} NOT NULL CHECK (performance_fee_amount >= 0),
            net_profit {MONEY} NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'distributed', 'no_profit')),
            distributed_at timestamptz,
            transaction_id uuid,
            {TIMESTAMPS},
            CONSTRAINT distributions_account_period_key UNIQUE (account_id, period),
            CONSTRAINT distributions_period_bounds CHECK (period_start <= period_end)
        );

        CREATE TABLE investment.transactions (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            account_id uuid NOT NULL REFERENCES investment.accounts (id),
            user_id uuid NOT NULL,
            type text NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'withdrawal_reversal',
                'profit_distribution', 'performance_fee', 'adjustment')),
            amount {MONEY} NOT NULL CHECK (amount >= 0),
            balance_before {MONEY},
            balance_after {MONEY},
            distribution_id uuid REFERENCES investment.distributions (id),
            distribution_period text,
            withdrawal_request_id uuid REFERENCES investment.withdrawal_requests (id),
            withdrawal_method text,
            withdrawal_destination_id text,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'completed', 'failed', 'reversed')),
            processed_at timestamptz,
            {TIMESTAMPS}
        );
        CREATE INDEX transactions_account_idx ON investment.transactions (account_id);
        CREATE INDEX transactions_status_created_idx ON investment.transactions (status, created_at);
        -- One ledger entry per distribution and per withdrawal (and per reversal): the database
        -- itself refuses a second one, whatever the code does.
        CREATE UNIQUE INDEX transactions_one_per_distribution
            ON investment.transactions (distribution_id) WHERE type = 'profit_distribution';
        CREATE UNIQUE INDEX transactions_one_per_withdrawal
            ON investment.transactions (withdrawal_request_id, type)
            WHERE type IN ('withdrawal', 'withdrawal_reversal');

        ALTER TABLE investment.distributions ADD CONSTRAINT distributions_transaction_fk
            FOREIGN KEY (transaction_id) REFERENCES investment.transactions (id)
            DEFERRABLE INITIALLY DEFERRED;
        ALTER TABLE investment.withdrawal_requests ADD CONSTRAINT withdrawal_requests_transaction_fk
            FOREIGN KEY (transaction_id) REFERENCES investment.transactions (id)
            DEFERRABLE INITIALLY DEFERRED;

        CREATE TABLE investment.daily_performance_rejects (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id text NOT NULL,
            date date NOT NULL,
            account_id text NOT NULL,
            reason text NOT NULL,
            item jsonb,
            {TIMESTAMPS}
        );
        CREATE INDEX daily_performance_rejects_run_idx
            ON investment.daily_performance_rejects (run_id, date, account_id);
        CREATE INDEX daily_performance_rejects_date_idx ON investment.daily_performance_rejects (date);
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_set_updated_at BEFORE UPDATE ON investment.{table} "
            "FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at()"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS investment.{table} CASCADE")
    op.execute("DROP AGGREGATE IF EXISTS investment.twr_chain(numeric, numeric)")
    op.execute("DROP FUNCTION IF EXISTS investment.twr_chain_sfunc(numeric, numeric, numeric)")
    op.execute("DROP FUNCTION IF EXISTS investment.twr_step(numeric, numeric)")
    op.execute("DROP FUNCTION IF EXISTS investment.round_half_even(numeric, integer)")
    op.execute("DROP FUNCTION IF EXISTS investment.set_updated_at()")
    op.execute("DROP SCHEMA IF EXISTS investment_staging CASCADE")
