"""Summary tables for the fund view, kept by the jobs in the same transaction as what they sum.

- ``investment.book_daily``: per product and business date, from that date's
  ``daily_performance`` rows: accounts, opening and closing balances, the day's return, trades,
  a histogram of the accounts' daily returns (fixed buckets, percent) and the five best and worst
  accounts. Rewritten by ``daily_performance``'s persist for D, so a rerun or a backfill in any
  order leaves it equal to a recomputation.
- ``investment.distribution_monthly``: per product and period, from ``distributions`` (with their
  corrections): accounts distributed and with no profit, gross profit, fee, net profit, and
  high-water-mark accounts below their mark. Rewritten by ``distribute`` and by a drift correction.
- ``investment.payouts_daily``: per business date and currency, withdrawals paid (by the ledger's
  ``withdrawal`` transactions), reversed (``withdrawal_reversal``), failed without being paid, and
  in flight (claimed that day, still processing). Rewritten for the dates a withdrawal step touched.
- ``investment.run_quality``: what the last run of a business date or period found: active
  accounts, stored, missing (active but not sent by the engine), rejected by reason, accounts held
  back by reason. Written by the runs' summaries.

Written 2026-12-02.
"""

from alembic import op

revision, down_revision = "0010", "0009"  # the file name starts with the revision

MONEY = "NUMERIC(24, 8)"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE investment.book_daily (
            product_id uuid NOT NULL REFERENCES investment.products (id),
            date date NOT NULL,
            currency text NOT NULL,
            accounts integer NOT NULL,
            opening_balance {MONEY} NOT NULL,
            closing_balance {MONEY} NOT NULL,
            daily_return {MONEY} NOT NULL,
            trades_executed bigint NOT NULL,
            winning_trades bigint NOT NULL,
            losing_trades bigint NOT NULL,
            return_buckets jsonb NOT NULL,
            best jsonb NOT NULL,
            worst jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (product_id, date)
        );
        CREATE INDEX book_daily_date_idx ON investment.book_daily (date);

        CREATE TABLE investment.distribution_monthly (
            product_id uuid NOT NULL REFERENCES investment.products (id),
            period text NOT NULL,
            currency text NOT NULL,
            accounts integer NOT NULL,
            distributed_accounts integer NOT NULL,
            no_profit_accounts integer NOT NULL,
            gross_profit {MONEY} NOT NULL,
            performance_fee_amount {MONEY} NOT NULL,
            net_profit {MONEY} NOT NULL,
            below_high_water_mark integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (product_id, period)
        );

        CREATE TABLE investment.payouts_daily (
            date date NOT NULL,
            currency text NOT NULL,
            paid_count integer NOT NULL,
            paid_amount {MONEY} NOT NULL,
            reversed_count integer NOT NULL,
            reversed_amount {MONEY} NOT NULL,
            failed_count integer NOT NULL,
            failed_amount {MONEY} NOT NULL,
            in_flight_count integer NOT NULL,
            in_flight_amount {MONEY} NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (date, currency)
        );
        CREATE TABLE investment.run_quality (
            job text NOT NULL CHECK (job IN ('daily_performance', 'monthly_distribution')),
            subject text NOT NULL,
            run_id text NOT NULL,
            active_accounts integer,
            stored integer,
            missing integer NOT NULL DEFAULT 0,
            rejected integer NOT NULL DEFAULT 0,
            rejected_by_reason jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            held_back integer NOT NULL DEFAULT 0,
            held_back_by_reason jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (job, subject)
        );

        CREATE INDEX withdrawal_requests_processed_idx ON investment.withdrawal_requests (processed_at)
            WHERE processed_at IS NOT NULL;
        CREATE INDEX withdrawal_requests_claimed_idx ON investment.withdrawal_requests (claimed_at)
            WHERE claimed_at IS NOT NULL;
        CREATE INDEX transactions_withdrawal_day_idx ON investment.transactions (processed_at)
            WHERE type IN ('withdrawal', 'withdrawal_reversal');
        """
    )
    # The rows stored before this migration, summarised once (dates in CRON_TIMEZONE).
    from investment_jobs.config import cron_timezone
    from investment_jobs.views.summaries import rebuild_all

    rebuild_all(op.get_bind().connection.dbapi_connection, cron_timezone())


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX investment.transactions_withdrawal_day_idx;
        DROP INDEX investment.withdrawal_requests_claimed_idx;
        DROP INDEX investment.withdrawal_requests_processed_idx;
        DROP TABLE investment.run_quality;
        DROP TABLE investment.payouts_daily;
        DROP TABLE investment.distribution_monthly;
        DROP TABLE investment.book_daily;
        """
    )
