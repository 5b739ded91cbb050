"""Every operator decision, withdrawals held for review, and corrections of a drifted month.

- ``investment.operator_decisions``: the audit trail. One row per decision a person (or the
  configured ``auto`` / ``cli:<user>`` approver) made, or a timeout made for them, or a refusal
  of one from a user outside ``MONEY_APPROVERS``: who, when, which run and task, the subject
  (period, request ids, account ids), the choice, the reason, and the figures the page showed.
  ``decision_key`` makes recording it idempotent: a task retried after writing it writes nothing.
- ``withdrawal_requests.review_status`` (``pending_review`` → ``approved`` | ``declined``), with
  who and when: a request at or above ``WITHDRAWAL_REVIEW_THRESHOLD``, or to a destination its
  account was never paid to, is claimed (its amount reserved) but never paid until approved.
- ``investment.distribution_corrections``: what an operator decided for a distributed month whose
  stored days drifted: an ``adjustment`` (a correcting transaction for the difference in net
  profit) or ``acknowledged`` (left as it is). Either way the stored figures it was decided on
  become the distribution's effective figures, so the drift check is clean until the days change
  again.

Written 2026-12-02.
"""

from alembic import op

revision, down_revision = "0008", "0007"  # the file name starts with the revision

MONEY = "NUMERIC(20, 8)"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE investment.operator_decisions (
            id bigserial PRIMARY KEY,
            decision_key text NOT NULL UNIQUE,
            decided_at timestamptz NOT NULL DEFAULT now(),
            decided_by text NOT NULL,
            dag_id text NOT NULL,
            run_id text NOT NULL,
            task_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('distribution_approval', 'withdrawal_review',
                                               'withdrawal_operator_case', 'distribution_drift')),
            period text CHECK (period ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$'),
            request_ids uuid[] NOT NULL DEFAULT '{{}}',
            account_ids uuid[] NOT NULL DEFAULT '{{}}',
            choice text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('applied', 'refused', 'timed_out', 'not_applied')),
            reason text,
            figures jsonb NOT NULL DEFAULT '{{}}'::jsonb
        );
        CREATE INDEX operator_decisions_run_idx ON investment.operator_decisions (dag_id, run_id);
        CREATE INDEX operator_decisions_period_idx ON investment.operator_decisions (period) WHERE period IS NOT NULL;

        ALTER TABLE investment.withdrawal_requests
            ADD COLUMN review_status text CHECK (review_status IN ('pending_review', 'approved', 'declined')),
            ADD COLUMN review_reason text,
            ADD COLUMN reviewed_by text,
            ADD COLUMN reviewed_at timestamptz;
        CREATE INDEX withdrawal_requests_pending_review_idx ON investment.withdrawal_requests (claimed_at)
            WHERE review_status = 'pending_review';

        CREATE TABLE investment.distribution_corrections (
            id bigserial PRIMARY KEY,
            distribution_id uuid NOT NULL REFERENCES investment.distributions (id),
            account_id uuid NOT NULL REFERENCES investment.accounts (id),
            period text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('adjustment', 'acknowledged')),
            gross_profit {MONEY} NOT NULL,
            opening_balance {MONEY} NOT NULL,
            closing_balance {MONEY} NOT NULL,
            performance_fee_amount {MONEY} NOT NULL,
            net_profit {MONEY} NOT NULL,
            net_delta {MONEY} NOT NULL DEFAULT 0,
            transaction_id uuid REFERENCES investment.transactions (id),
            decision_id bigint NOT NULL REFERENCES investment.operator_decisions (id),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT distribution_corrections_once UNIQUE (distribution_id, decision_id),
            -- an adjustment's figures are a full recomputation; an acknowledgement keeps the paid fee and net
            CONSTRAINT distribution_corrections_net CHECK (kind = 'acknowledged' OR gross_profit <= 0
                                                           OR gross_profit - performance_fee_amount = net_profit)
        );
        CREATE INDEX distribution_corrections_distribution_idx
            ON investment.distribution_corrections (distribution_id, id DESC);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE investment.distribution_corrections;
        DROP INDEX investment.withdrawal_requests_pending_review_idx;
        ALTER TABLE investment.withdrawal_requests
            DROP COLUMN review_status, DROP COLUMN review_reason, DROP COLUMN reviewed_by, DROP COLUMN reviewed_at;
        DROP TABLE investment.operator_decisions;
        """
    )
