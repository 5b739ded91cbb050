"""Payout state of withdrawal requests, the ML engine notification outbox, and a settlement index.

Written 2026-11-27.
"""

from alembic import op

revision, down_revision = "0004", "0003"  # the file name starts with the revision


def upgrade() -> None:
    op.execute(
        """
        -- What the withdrawal job records around each Stripe call, committed before and after it.
        ALTER TABLE investment.withdrawal_requests
            ADD COLUMN currency text CHECK (currency ~ '^[a-z]{3}$'),
            ADD COLUMN payout_amount_minor bigint CHECK (payout_amount_minor > 0),
            ADD COLUMN claimed_at timestamptz,
            ADD COLUMN claimed_by_run text,
            ADD COLUMN payout_attempts integer NOT NULL DEFAULT 0 CHECK (payout_attempts >= 0),
            ADD COLUMN first_attempt_at timestamptz,
            ADD COLUMN last_attempt_at timestamptz,
            ADD COLUMN payout_id text,
            ADD COLUMN payout_status text,
            ADD COLUMN failure_code text,
            ADD COLUMN failure_message text,
            ADD COLUMN last_error text,
            ADD COLUMN needs_operator text,
            -- A request in processing holds its amount (a reservation) and knows what it pays.
            ADD CONSTRAINT withdrawal_requests_processing_is_priced CHECK (
                status <> 'processing' OR (currency IS NOT NULL AND payout_amount_minor IS NOT NULL
                                           AND claimed_at IS NOT NULL)),
            -- completed means Stripe said paid and the ledger has the withdrawal.
            ADD CONSTRAINT withdrawal_requests_completed_has_ledger CHECK (
                status <> 'completed' OR (transaction_id IS NOT NULL AND processed_at IS NOT NULL));
        CREATE UNIQUE INDEX withdrawal_requests_payout_id_key
            ON investment.withdrawal_requests (payout_id) WHERE payout_id IS NOT NULL;
        CREATE INDEX withdrawal_requests_processing_account_idx
            ON investment.withdrawal_requests (account_id) WHERE status = 'processing';

        -- daily_performance subtracts withdrawals completed after the day it writes.
        CREATE INDEX transactions_withdrawals_processed_idx
            ON investment.transactions (account_id, processed_at)
            WHERE type IN ('withdrawal', 'withdrawal_reversal');

        -- The ML engine hears of each completed withdrawal through this outbox: a row is written
        -- in the same transaction as the completion and delivered by a task of its own.
        CREATE TABLE investment.withdrawal_notifications (
            withdrawal_request_id uuid PRIMARY KEY REFERENCES investment.withdrawal_requests (id),
            payload jsonb NOT NULL,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'refused')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            delivered_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX withdrawal_notifications_pending_idx
            ON investment.withdrawal_notifications (created_at) WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE investment.withdrawal_notifications;
        DROP INDEX investment.transactions_withdrawals_processed_idx;
        DROP INDEX investment.withdrawal_requests_processing_account_idx;
        DROP INDEX investment.withdrawal_requests_payout_id_key;
        ALTER TABLE investment.withdrawal_requests
            DROP CONSTRAINT withdrawal_requests_completed_has_ledger,
            DROP CONSTRAINT withdrawal_requests_processing_is_priced,
            DROP COLUMN currency, DROP COLUMN payout_amount_minor, DROP COLUMN claimed_at,
            DROP COLUMN claimed_by_run, DROP COLUMN payout_attempts, DROP COLUMN first_attempt_at,
            DROP COLUMN last_attempt_at, DROP COLUMN payout_id, DROP COLUMN payout_status,
            DROP COLUMN failure_code, DROP COLUMN failure_message, DROP COLUMN last_error,
            DROP COLUMN needs_operator;
        """
    )
