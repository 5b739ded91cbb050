"""Step 3, settle: read the payouts back and complete, fail or reverse, set-based, in one
transaction per outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from investment_jobs.jobs.withdrawals.connect import give_back_transfers
from investment_jobs.jobs.withdrawals.state import (
    BALANCE_UNCOVERED,
    FAILED_PAYOUT,
    PAID,
    PAYOUT_UNKNOWN,
    amounts_by_currency,
    as_text,
    flag_operator,
    log,
    platform_refused,
    record_ambiguous,
)
from investment_jobs.jobs.withdrawals.webhook_inbox import final_payout_states, mark_events_applied
from investment_jobs.stripe.calls import Payout, StripeCallError, payouts_created_since, retrieve_payout
from investment_jobs.stripe.payouts import PLATFORM
from investment_jobs.views.summaries import refresh_payouts_of

if TYPE_CHECKING:
    import psycopg
    from stripe import StripeClient


def settle_payouts(conn: psycopg.Connection, client: StripeClient, watch: timedelta,
                   rate_limit_attempts: int = 3) -> dict[str, Any]:
    """Read back every payout still in flight, and those completed within ``watch``, and apply
    what Stripe says in set-based transactions. What a verified webhook already said (the
    ``stripe_events`` inbox) is taken from there; the rest is read from Stripe. A Connect payment
    whose payout failed gives its transfer back first (:func:`give_back_transfers`)."""
    rows = conn.execute(
        """
        SELECT w.id::text, w.payout_id, w.status, w.first_attempt_at, w.connected_account_id
        FROM investment.withdrawal_requests w
        WHERE w.payout_id IS NOT NULL
          AND (w.needs_operator IS NULL OR w.operator_case = %s)
          AND (w.status = 'processing' OR (w.status = 'completed' AND w.processed_at >= now() - %s))
        """, (BALANCE_UNCOVERED, watch)).fetchall()
    refused = conn.execute(
        """
        SELECT w.id::text, NULL::text, w.failure_code, w.failure_message FROM investment.withdrawal_requests w
        WHERE w.status = 'processing' AND w.payout_refused_at IS NOT NULL AND w.needs_operator IS NULL
        """).fetchall()
    conn.commit()
    counts: dict[str, Any] = {"completed": 0, "completed_amounts": {}, "failed": 0, "failed_amounts": {},
                              "reversed": 0, "reversed_amounts": {}, "in_flight": 0, "uncovered": 0,
                              "unknown_at_stripe": 0, "unread": 0, "from_webhooks": 0, "transfers_given_back": 0}
    to_complete, to_fail, to_reverse, in_flight = [], [], [], []
    to_fail += [tuple(r) for r in refused]
    if rows:
        payouts, unknown, unread = known_payouts(conn, client, rows)
        counts["from_webhooks"] = sum(1 for p in payouts.values() if p.from_webhook)
    for request_id, payout_id, status, _, _ in rows:
        if payout_id in unknown:
            flag_operator(conn, request_id, f"Stripe does not know payout {payout_id} ({unknown[payout_id]}): "
                          "check the Stripe dashboard for a payout with metadata withdrawal_request_id "
                          f"{request_id}", PAYOUT_UNKNOWN)
            counts["unknown_at_stripe"] += 1
            continue
        if payout_id in unread:
            record_ambiguous(conn, request_id, f"payout {payout_id} could not be read back: {unread[payout_id]}")
            counts["unread"] += 1
            continue
        payout = payouts[payout_id]
        if status == "processing":
            if payout.status == PAID:
                to_complete.append(request_id)
            elif payout.status in FAILED_PAYOUT:
                to_fail.append((request_id, payout.status, payout.failure_code or payout.status,
                                payout.failure_message or f"payout {payout.status}"))
            else:
                in_flight.append((request_id, payout.status))
        elif status == "completed" and payout.status in FAILED_PAYOUT:
            to_reverse.append((request_id, payout.status, payout.failure_code or payout.status,
                               payout.failure_message or f"payout {payout.status} after it was paid"))
    if in_flight:
        with conn.transaction():
            conn.cursor().executemany(
                "UPDATE investment.withdrawal_requests SET payout_status = %s, updated_at = now() "
                "WHERE id = %s AND status = 'processing' AND payout_status IS DISTINCT FROM %s",
                [(s, rid, s) for rid, s in in_flight])
    counts["in_flight"] = len(in_flight)
    if to_complete:
        counts.update(complete(conn, to_complete))
    if to_fail or to_reverse:
        given_back = give_back_transfers(conn, client, [r[0] for r in to_fail + to_reverse], rate_limit_attempts)
        counts["transfers_given_back"] = given_back.made
        counts["transfers_not_given_back"] = given_back.refused
        to_fail = [r for r in to_fail if r[0] in given_back.settled]
        to_reverse = [r for r in to_reverse if r[0] in given_back.settled]
    if to_fail:
        counts.update(fail_processing(conn, to_fail))
    if to_reverse:
        counts.update(reverse(conn, to_reverse))
    counts.update(mark_events_applied(conn, [r[1] for r in rows]))
    return counts


def known_payouts(conn: psycopg.Connection, client: StripeClient, rows: list[tuple[Any, ...]]
                  ) -> tuple[dict[str, Payout], dict[str, str], dict[str, str]]:
    """What each payout of ``rows`` is now: the webhook inbox's final word (paid, failed, canceled)
    where it has one, else Stripe's answer to a read. Returns (payouts, unknown, unread)."""
    settled_by_events = final_payout_states(conn, [r[1] for r in rows])
    to_read = [r for r in rows if r[1] not in settled_by_events]
    payouts: dict[str, Payout] = dict(settled_by_events)
    unknown: dict[str, str] = {}
    unread: dict[str, str] = {}
    if to_read:
        oldest: datetime = min((r[3] for r in to_read if r[3] is not None), default=datetime.now(UTC))  # clock-ok
        read, unknown, unread = read_payouts(client, {r[1]: r[4] for r in to_read},
                                             since=oldest - timedelta(hours=1))
        payouts.update(read)
    return payouts, unknown, unread


def read_payouts(client: StripeClient, ids: dict[str, str | None], since: datetime
                 ) -> tuple[dict[str, Payout], dict[str, str], dict[str, str]]:
    """One listing of the platform's payouts created since ``since`` (100 per page), then a read of
    each one the listing did not show (a connected account's payout is read on that account:
    ``ids`` maps a payout id to its connected account, or None). Returns (payouts, unknown to
    Stripe, could not be read): one payout's trouble stays that payout's. Stripe refusing the
    platform's key stops the step; a listing that fails otherwise fails the step, to be retried."""
    found: dict[str, Payout] = {}
    unknown: dict[str, str] = {}
    unread: dict[str, str] = {}
    on_platform = {payout_id for payout_id, account in ids.items() if account is None}
    try:
        if on_platform:
            for payout in payouts_created_since(client, since):
                if payout.id in on_platform:
                    found[payout.id] = payout
                    if len(found) == len(on_platform):
                        break
    except StripeCallError as exc:
        if exc.verdict.kind == PLATFORM:
            raise platform_refused(exc) from None
        raise
    for payout_id in ids.keys() - found.keys():
        try:
            found[payout_id] = retrieve_payout(client, payout_id, stripe_account=ids[payout_id])
        except StripeCallError as exc:
            if exc.verdict.kind == PLATFORM:
                raise platform_refused(exc) from None
            if exc.unknown_object:
                unknown[payout_id] = f"HTTP 404 {exc.verdict.message[:200]}"
            else:
                unread[payout_id] = f"{exc.error_type}: {exc.verdict.message[:200]}"
    return found, unknown, unread


def _lock(conn: psycopg.Connection, request_ids: list[str], status: str) -> list[str]:
    """Lock the requests still in ``status`` and then their accounts, both in id order."""
    locked = [r[0] for r in conn.execute(
        """
        SELECT id::text FROM investment.withdrawal_requests
        WHERE id = ANY(%s::uuid[]) AND status = %s ORDER BY id FOR UPDATE
        """, (request_ids, status)).fetchall()]
    conn.execute(
        """
        SELECT a.id FROM investment.accounts a
        WHERE a.id IN (SELECT account_id FROM investment.withdrawal_requests WHERE id = ANY(%s::uuid[]))
        ORDER BY a.id FOR UPDATE
        """, (locked,))
    return locked


def _total_per_currency(conn: psycopg.Connection, temp_table: str) -> dict[str, str]:
    """Amounts per currency of one of this module's own temp tables (``completing``/``reversing``)."""
    from psycopg import sql

    statement = sql.SQL("SELECT currency, sum(amount) FROM {} GROUP BY currency ORDER BY currency")
    return {c: str(t) for c, t in conn.execute(statement.format(sql.Identifier(temp_table))).fetchall()}


def complete(conn: psycopg.Connection, request_ids: list[str]) -> dict[str, Any]:
    """paid → completed, in one transaction: a withdrawal transaction per request (balances chained
    per account, oldest first), each balance and total_withdrawn moved once, and an outbox row.
    A request whose account no longer covers it is left in processing for an operator."""
    with conn.transaction():
        locked = _lock(conn, request_ids, "processing")
        conn.execute(
            """
            CREATE TEMP TABLE completing ON COMMIT DROP AS
            SELECT w.id AS request_id, w.account_id, w.user_id, w.amount, w.currency, w.withdrawal_method,
                   w.payout_id, gen_random_uuid() AS transaction_id,
                   a.current_balance - coalesce(sum(w.amount) OVER (
                       PARTITION BY w.account_id ORDER BY w.created_at, w.id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS balance_before
            FROM investment.withdrawal_requests w JOIN investment.accounts a ON a.id = w.account_id
            WHERE w.id = ANY(%s::uuid[])
            """, (locked,))
        # Never below zero: every request of an account whose balance would not cover them waits.
        uncovered = conn.execute(
            """
            WITH short AS (SELECT account_id FROM completing GROUP BY account_id
                           HAVING min(balance_before - amount) < 0)
            DELETE FROM completing c USING short s WHERE c.account_id = s.account_id
            RETURNING c.request_id::text, c.balance_before, c.amount
            """).fetchall()
        conn.execute(
            """
            INSERT INTO investment.transactions (id, account_id, user_id, type, amount, balance_before,
                balance_after, withdrawal_request_id, withdrawal_method, withdrawal_destination_id, status,
                processed_at)
            SELECT transaction_id, account_id, user_id, 'withdrawal', amount, balance_before,
                   balance_before - amount, request_id, withdrawal_method, payout_id, 'completed', now()
            FROM completing
            """)
        conn.execute(
            """
            UPDATE investment.accounts a
            SET current_balance = a.current_balance - t.total, total_withdrawn = a.total_withdrawn + t.total,
                updated_at = now()
            FROM (SELECT account_id, sum(amount) AS total FROM completing GROUP BY account_id) t
            WHERE a.id = t.account_id
            """)
        done = conn.execute(
            """
            UPDATE investment.withdrawal_requests w
            SET status = 'completed', payout_status = 'paid', processed_at = now(),
                transaction_id = c.transaction_id, last_error = NULL, needs_operator = NULL, operator_case = NULL,
                updated_at = now()
            FROM completing c WHERE w.id = c.request_id
            """).rowcount
        conn.execute(
            """
            INSERT INTO investment.withdrawal_notifications (withdrawal_request_id, payload)
            SELECT request_id, jsonb_build_object(
                'withdrawal_request_id', request_id::text, 'account_id', account_id::text,
                'amount', amount::text, 'new_balance', (balance_before - amount)::text)
            FROM completing
            ON CONFLICT (withdrawal_request_id) DO NOTHING
            """)
        amounts = _total_per_currency(conn, "completing")
        refresh_payouts_of(conn, [r[0] for r in conn.execute("SELECT request_id::text FROM completing").fetchall()])
        if uncovered:
            conn.cursor().executemany(
                """UPDATE investment.withdrawal_requests SET needs_operator = %s, operator_case = %s,
                          updated_at = now() WHERE id = %s""",
                [(f"payout paid, but the account's balance ({before}) no longer covers {amount}: "
                  "reconcile the balance; the next run completes it", BALANCE_UNCOVERED, rid)
                 for rid, before, amount in uncovered])
    for rid, before, amount in uncovered:
        log.error("withdrawal %s: paid, but balance %s no longer covers %s", rid, before, amount)
    return {"completed": done, "completed_amounts": amounts, "uncovered": len(uncovered)}


def fail_processing(conn: psycopg.Connection, failures: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """failed/canceled before it was paid: the request fails with Stripe's reason, nothing was debited."""
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE failing (request_id uuid, payout_status text, code text, message text)"
                     " ON COMMIT DROP")
        conn.cursor().executemany("INSERT INTO failing VALUES (%s, %s, %s, %s)", failures)
        rows = conn.execute(
            """
            UPDATE investment.withdrawal_requests w
            SET status = 'failed', payout_status = f.payout_status, failure_code = f.code,
                failure_message = f.message, processed_at = now(), last_error = NULL, updated_at = now()
            FROM failing f WHERE w.id = f.request_id AND w.status = 'processing'
            RETURNING w.currency, w.amount
            """).fetchall()
        refresh_payouts_of(conn, [f[0] for f in failures])
    amounts = amounts_by_currency()
    for currency, amount in rows:
        amounts[currency] += amount
    return {"failed": len(rows), "failed_amounts": as_text(amounts)}


def reverse(conn: psycopg.Connection, reversals: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """A payout that failed after it was paid: the money came back, so a withdrawal_reversal
    transaction credits it once (balances chained per account) and the request ends failed."""
    with conn.transaction():
        locked = set(_lock(conn, [r[0] for r in reversals], "completed"))
        conn.execute("CREATE TEMP TABLE reversal_reasons (request_id uuid, payout_status text, code text,"
                     " message text) ON COMMIT DROP")
        conn.cursor().executemany("INSERT INTO reversal_reasons VALUES (%s, %s, %s, %s)",
                                  [r for r in reversals if r[0] in locked])
        conn.execute(
            """
            CREATE TEMP TABLE reversing ON COMMIT DROP AS
            SELECT w.id AS request_id, w.account_id, w.user_id, w.amount, w.currency, w.withdrawal_method,
                   w.payout_id, w.transaction_id AS withdrawal_transaction_id,
                   a.current_balance + coalesce(sum(w.amount) OVER (
                       PARTITION BY w.account_id ORDER BY w.created_at, w.id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS balance_before
            FROM investment.withdrawal_requests w JOIN investment.accounts a ON a.id = w.account_id
            WHERE w.id IN (SELECT request_id FROM reversal_reasons)
            """)
        conn.execute(
            """
            INSERT INTO investment.transactions (account_id, user_id, type, amount, balance_before, balance_after,
                withdrawal_request_id, withdrawal_method, withdrawal_destination_id, status, processed_at)
            SELECT account_id, user_id, 'withdrawal_reversal', amount, balance_before, balance_before + amount,
                   request_id, withdrawal_method, payout_id, 'completed', now()
            FROM reversing
            """)
        conn.execute(
            """
            UPDATE investment.transactions t SET status = 'reversed', updated_at = now()
            FROM reversing r WHERE t.id = r.withdrawal_transaction_id
            """)
        conn.execute(
            """
            UPDATE investment.accounts a
            SET current_balance = a.current_balance + t.total, total_withdrawn = a.total_withdrawn - t.total,
                updated_at = now()
            FROM (SELECT account_id, sum(amount) AS total FROM reversing GROUP BY account_id) t
            WHERE a.id = t.account_id
            """)
        done = conn.execute(
            """
            UPDATE investment.withdrawal_requests w
            SET status = 'failed', payout_status = r.payout_status, failure_code = r.code,
                failure_message = r.message, updated_at = now()
            FROM reversal_reasons r WHERE w.id = r.request_id
            """).rowcount
        amounts = _total_per_currency(conn, "reversing")
        refresh_payouts_of(conn, [r[0] for r in reversals if r[0] in locked])
    for rid, _, code, message in reversals:
        log.error("withdrawal %s: payout failed after it was paid (%s: %s); reversed", rid, code, message)
    return {"reversed": done, "reversed_amounts": amounts}
