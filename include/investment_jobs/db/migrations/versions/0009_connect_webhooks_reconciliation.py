"""Payouts through Stripe Connect, the webhook inbox, and the daily Stripe reconciliation.

- ``withdrawal_requests``: a request whose ``destination_details`` name a connected account
  (``stripe_account``) is paid in two steps, each committed before and after its call: a transfer
  to the connected account (``transfer_id``, ``transfer_created_at``), then a payout on it
  (``payout_id``, ``payout_created_at``). ``payout_refused_at``: Stripe refused that payout for
  good, so the transfer is owed back; ``transfer_reversal_id`` records that it was given back.
- ``investment.stripe_events``: every verified webhook event, once per event id (the primary key),
  with the object it is about; ``applied_at``/``outcome`` say what settle did with it.
- ``investment.stripe_reconciliations`` (one row per business date) and
  ``investment.stripe_reconciliation_differences`` (each difference with Stripe's value and ours).
  A rerun of a date replaces that date's rows in one transaction.

Written 2026-12-02.
"""

from alembic import op

revision, down_revision = "0009", "0008"  # the file name starts with the revision


# 0006's cases and the Connect one: a transfer Stripe would not let us give back
OPERATOR_CASES = ("idempotency_conflict", "payout_mismatch", "balance_uncovered", "payout_unknown",
                  "account_not_payable", "transfer_unreversed")


def upgrade() -> None:
    cases = ", ".join(f"'{c}'" for c in OPERATOR_CASES)
    op.execute(
        f"""
        ALTER TABLE investment.withdrawal_requests
            ADD COLUMN connected_account_id text CHECK (connected_account_id ~ '^acct_'),
            ADD COLUMN transfer_id text,
            ADD COLUMN transfer_created_at timestamptz,
            ADD COLUMN transfer_reversal_id text,
            ADD COLUMN payout_created_at timestamptz,
            ADD COLUMN payout_refused_at timestamptz,
            ADD CONSTRAINT withdrawal_requests_connect_payout_after_transfer CHECK (
                connected_account_id IS NULL OR payout_id IS NULL OR transfer_id IS NOT NULL),
            DROP CONSTRAINT withdrawal_requests_operator_case_check,
            ADD CONSTRAINT withdrawal_requests_operator_case_check CHECK (operator_case IN ({cases}));
        CREATE UNIQUE INDEX withdrawal_requests_transfer_id_key
            ON investment.withdrawal_requests (transfer_id) WHERE transfer_id IS NOT NULL;
        CREATE INDEX withdrawal_requests_payout_created_idx
            ON investment.withdrawal_requests (payout_created_at) WHERE payout_created_at IS NOT NULL;
        CREATE INDEX withdrawal_requests_transfer_created_idx
            ON investment.withdrawal_requests (transfer_created_at) WHERE transfer_created_at IS NOT NULL;

        CREATE TABLE investment.stripe_events (
            id text PRIMARY KEY CHECK (id ~ '^evt_'),
            type text NOT NULL,
            account text,
            object_type text NOT NULL,
            object_id text NOT NULL,
            object_status text,
            stripe_created_at timestamptz NOT NULL,
            payload jsonb NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            applied_at timestamptz,
            outcome text CHECK (outcome IN ('applied', 'unknown_object', 'ignored')),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX stripe_events_object_idx ON investment.stripe_events (object_id);
        CREATE INDEX stripe_events_open_idx ON investment.stripe_events (received_at) WHERE applied_at IS NULL;
        CREATE TRIGGER stripe_events_set_updated_at BEFORE UPDATE ON investment.stripe_events
            FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at();

        CREATE TABLE investment.stripe_reconciliations (
            business_date date PRIMARY KEY,
            run_id text NOT NULL,
            payouts_at_stripe integer NOT NULL,
            transfers_at_stripe integer NOT NULL,
            requests_compared integer NOT NULL,
            differences integer NOT NULL CHECK (differences >= 0),
            fees jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            balance_change jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TRIGGER stripe_reconciliations_set_updated_at BEFORE UPDATE ON investment.stripe_reconciliations
            FOR EACH ROW EXECUTE FUNCTION investment.set_updated_at();

        CREATE TABLE investment.stripe_reconciliation_differences (
            id bigserial PRIMARY KEY,
            business_date date NOT NULL REFERENCES investment.stripe_reconciliations (business_date)
                ON DELETE CASCADE,
            object_type text NOT NULL CHECK (object_type IN ('payout', 'transfer', 'balance')),
            object_id text NOT NULL,
            withdrawal_request_id uuid,
            kind text NOT NULL CHECK (kind IN ('missing_in_database', 'missing_at_stripe', 'amount', 'currency',
                                               'status', 'ledger', 'balance_change')),
            stripe_value text,
            database_value text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT stripe_reconciliation_differences_once UNIQUE (business_date, object_type, object_id, kind)
        );
        """
    )


def downgrade() -> None:
    cases = ", ".join(f"'{c}'" for c in OPERATOR_CASES[:-1])
    op.execute(
        f"""
        DROP TABLE investment.stripe_reconciliation_differences;
        DROP TABLE investment.stripe_reconciliations;
        DROP TABLE investment.stripe_events;
        UPDATE investment.withdrawal_requests SET operator_case = NULL WHERE operator_case = 'transfer_unreversed';
        ALTER TABLE investment.withdrawal_requests
            DROP CONSTRAINT withdrawal_requests_operator_case_check,
            ADD CONSTRAINT withdrawal_requests_operator_case_check CHECK (operator_case IN ({cases})),
            DROP CONSTRAINT withdrawal_requests_connect_payout_after_transfer,
            DROP COLUMN connected_account_id, DROP COLUMN transfer_id, DROP COLUMN transfer_created_at,
            DROP COLUMN transfer_reversal_id, DROP COLUMN payout_created_at, DROP COLUMN payout_refused_at;
        """
    )
