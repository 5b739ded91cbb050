"""withdrawal_processing: pay approved withdrawal requests through Stripe, each exactly once.

States: ``approved → processing → completed | failed``; ``rejected`` only before money moved.
Every step commits before the next outside call, so a crash anywhere leaves a state that the
next run (or the task's retry) finishes with the same idempotency key:

1. ``claim``    one short transaction: lock approved ``stripe_payout`` requests (``FOR UPDATE SKIP
                LOCKED``) and their accounts; reject what can never be paid (account not active,
                no destination, an amount the currency cannot carry) or is not covered by the
                available balance (current balance − amounts already in ``processing``); move
                the rest to ``processing``, which reserves their amounts.
2. ``pay``      per request, under a session advisory lock: commit the attempt, create the payout
                with key ``withdrawal-<id>``, commit the payout id (or the definite failure, or
                the ambiguous error that leaves it in ``processing`` for a retry). Past Stripe's
                key window it first looks the payout up by metadata.
3. ``settle``   read the payouts back (one listing): ``paid`` → ``completed`` with one
                ``withdrawal`` transaction, the balance and ``total_withdrawn`` moved once and an
                outbox row for the ML engine, in one transaction; ``failed``/``canceled`` →
                ``failed`` (reservation released); a completed payout that failed later is
                reversed by a ``withdrawal_reversal`` transaction.
4. ``deliver_notifications``  post pending outbox rows to the ML engine; never touches a request.

``bank_transfer`` requests have no integration: they stay ``approved`` and are reported as awaiting
a manual transfer.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.stripe.payouts import (
    AMBIGUOUS,
    CONFLICT,
    DEFINITE,
    PLATFORM,
    Rejection,
    classify_error,
    destination_of,
    idempotency_key,
    payout_params,
    rejection_for,
)

if TYPE_CHECKING:
    import psycopg
    from investment_jobs.ml_engine.client import MLEngineClient
    from stripe import Payout, StripeClient

log = logging.getLogger("investment_jobs.withdrawals")

SUMMARY_ID_LIMIT = 50
PAID = "paid"
FAILED_PAYOUT = ("failed", "canceled")
IN_FLIGHT = ("pending", "in_transit")


class WithdrawalsNeedOperator(Exception):
    """Requests that no retry will finish alone: an operator must look (the summary lists them)."""


class PayoutsStillAmbiguous(Exception):
    """Some payouts got an ambiguous answer: they stay ``processing``; a retry uses the same key."""


class StripeRefusedThePlatform(Exception):
    """Stripe refused the platform's own credentials (401/403): a configuration problem, not any
    request's. The run stops at the first one and leaves every request where it was."""


# Why a request needs an operator (withdrawal_requests.operator_case, migration 0006).
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
PAYOUT_MISMATCH = "payout_mismatch"
BALANCE_UNCOVERED = "balance_uncovered"  # settle keeps trying it: it completes once the balance covers it
PAYOUT_UNKNOWN = "payout_unknown"
ACCOUNT_NOT_PAYABLE = "account_not_payable"


def _amounts() -> defaultdict[str, Decimal]:
    return defaultdict(Decimal)


def _text(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {currency: str(total) for currency, total in sorted(amounts.items())}


# --- 1. claim ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    request_id: str
    account_id: str
    user_id: str
    amount: Decimal
    destination: Any
    account_user_id: str
    account_status: str
    current_balance: Decimal
    currency: str


def claim(conn: psycopg.Connection, run_id: str, batch_size: int) -> dict[str, Any]:
    """Move approved stripe_payout requests to processing (reserving) or rejected, in one transaction.

    Requests are taken oldest first. Accounts are locked in id order, so two runs (or a settle)
    never deadlock here, and an overlapping run skips the requests this one holds.
    """
    with conn.transaction():
        locked = conn.execute(
            """
            SELECT w.id::text, w.account_id::text, w.user_id::text, w.amount, w.destination_details
            FROM investment.withdrawal_requests w
            WHERE w.status = 'approved' AND w.withdrawal_method = 'stripe_payout'
            ORDER BY w.created_at, w.id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
            """, (batch_size,)).fetchall()
        account_ids = sorted({row[1] for row in locked})
        accounts = {row[0]: row[1:] for row in conn.execute(
            """
            SELECT a.id::text, a.user_id::text, a.status, a.current_balance, p.currency
            FROM investment.accounts a JOIN investment.products p ON p.id = a.product_id
            WHERE a.id = ANY(%s::uuid[])
            ORDER BY a.id
            FOR UPDATE OF a
            """, (account_ids,)).fetchall()}
        reserved = dict(conn.execute(
            """
            SELECT account_id::text, sum(amount) FROM investment.withdrawal_requests
            WHERE status = 'processing' AND account_id = ANY(%s::uuid[])
            GROUP BY account_id
            """, (account_ids,)).fetchall())
        candidates = [
            Candidate(rid, aid, uid, amount, destination_of(details), *accounts[aid])
            for rid, aid, uid, amount, details in locked
        ]
        to_process, to_reject = decide_claims(candidates, reserved)
        if to_process:
            conn.cursor().executemany(
                """
                UPDATE investment.withdrawal_requests
                SET status = 'processing', currency = %s, payout_amount_minor = %s, claimed_at = now(),
                    claimed_by_run = %s, updated_at = now()
                WHERE id = %s AND status = 'approved'
                """, [(c.currency, minor, run_id, c.request_id) for c, minor in to_process])
        if to_reject:
            conn.cursor().executemany(
                """
                UPDATE investment.withdrawal_requests
                SET status = 'rejected', rejection_reason = %s, processed_at = now(), updated_at = now()
                WHERE id = %s AND status = 'approved'
                """, [(reason, c.request_id) for c, reason in to_reject])
    claimed_amounts, rejected_amounts = _amounts(), _amounts()
    for c, _ in to_process:
        claimed_amounts[c.currency] += c.amount
    for c, _ in to_reject:
        rejected_amounts[c.currency] += c.amount
    for c, reason in to_reject:
        log.warning("withdrawal %s rejected: %s", c.request_id, reason)
    return {
        "claimed": len(to_process), "claimed_amounts": _text(claimed_amounts),
        "rejected": len(to_reject), "rejected_amounts": _text(rejected_amounts),
        "rejections": [{"withdrawal_request_id": c.request_id, "reason": reason}
                       for c, reason in to_reject[:SUMMARY_ID_LIMIT]],
    }


def decide_claims(candidates: Iterable[Candidate], reserved: dict[str, Decimal]
                  ) -> tuple[list[tuple[Candidate, int]], list[tuple[Candidate, str]]]:
    """Oldest first per account: a request is paid only if the balance left after what is already
    reserved (and what this batch took before it) covers it. Pure, so it can be tested alone."""
    available: dict[str, Decimal] = {}
    to_process: list[tuple[Candidate, int]] = []
    to_reject: list[tuple[Candidate, str]] = []
    for c in candidates:
        if c.account_id not in available:
            available[c.account_id] = c.current_balance - reserved.get(c.account_id, Decimal(0))
        if c.user_id != c.account_user_id:
            to_reject.append((c, "request's user_id does not own the account"))
            continue
        verdict = rejection_for(account_status=c.account_status, currency=c.currency, amount=c.amount,
                                destination=c.destination, available=available[c.account_id])
        if isinstance(verdict, Rejection):
            to_reject.append((c, verdict.reason))
            continue
        available[c.account_id] -= c.amount
        to_process.append((c, verdict))
    return to_process, to_reject


# --- 2. pay ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Payable:
    request_id: str
    account_id: str
    user_id: str
    amount: Decimal
    amount_minor: int
    currency: str
    destination: Any


@contextmanager
def request_lock(conn: psycopg.Connection, request_id: str) -> Iterator[bool]:
    """A session advisory lock per request: two runs never call Stripe for one request at once.
    It needs no open transaction, and dies with the session if the process does."""
    key = idempotency_key(request_id)
    got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
    conn.commit()
    try:
        yield got
    finally:
        if got:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
            conn.commit()


def pay(conn: psycopg.Connection, client: StripeClient, key_window: timedelta,
        rate_limit_attempts: int = 3) -> dict[str, Any]:
    """Create a payout for every processing request that has none yet (this run's and earlier ones)."""
    rows = conn.execute(
        """
        SELECT w.id::text, w.account_id::text, w.user_id::text, w.amount, w.payout_amount_minor, w.currency,
               w.destination_details
        FROM investment.withdrawal_requests w
        WHERE w.status = 'processing' AND w.payout_id IS NULL AND w.needs_operator IS NULL
        ORDER BY w.claimed_at, w.id
        """).fetchall()
    conn.commit()
    counts: dict[str, Any] = {"payouts_created": 0, "payouts_found": 0, "failed": 0, "ambiguous": 0,
                              "conflicts": 0, "skipped_locked": 0, "rejected": 0}
    paid_amounts, failed_amounts = _amounts(), _amounts()
    errors: list[dict[str, str]] = []
    for rid, aid, uid, amount, minor, currency, details in rows:
        request = Payable(rid, aid, uid, amount, minor, currency, destination_of(details))
        with request_lock(conn, rid) as got:
            if not got:
                counts["skipped_locked"] += 1
                continue
            outcome, detail = pay_one(conn, client, request, key_window, rate_limit_attempts)
        counts[outcome] += 1
        if outcome in ("payouts_created", "payouts_found"):
            paid_amounts[currency] += amount
        elif outcome == "failed":
            failed_amounts[currency] += amount
        if detail and len(errors) < SUMMARY_ID_LIMIT:
            errors.append({"withdrawal_request_id": rid, "outcome": outcome, "error": detail})
    counts.update(payout_amounts=_text(paid_amounts), failed_amounts=_text(failed_amounts), errors=errors)
    return counts


@dataclass(frozen=True)
class Attempt:
    """What ``begin_attempt`` decided: go on (look up first past the key window), or stop."""

    proceed: bool
    look_up_first: bool = False
    outcome: str = "skipped_locked"  # when not proceeding: skipped_locked, rejected or conflicts
    detail: str | None = None


def begin_attempt(conn: psycopg.Connection, request_id: str, key_window: timedelta) -> Attempt:
    """Commit the attempt before calling Stripe, after checking the account may still be paid.

    A request another run finished is not ours any more. An account closed or suspended since the
    claim is not paid: with no earlier attempt nothing can exist at Stripe, so the request is
    rejected (its reservation released); after an earlier attempt a payout may exist, so an
    operator decides. Past Stripe's key window the payout is looked up first.
    """
    row = conn.execute(
        """
        SELECT w.payout_attempts, a.status, now() - w.first_attempt_at > %s
        FROM investment.withdrawal_requests w JOIN investment.accounts a ON a.id = w.account_id
        WHERE w.id = %s AND w.status = 'processing' AND w.payout_id IS NULL AND w.needs_operator IS NULL
        FOR UPDATE OF w
        """, (key_window, request_id)).fetchone()
    if row is None:
        conn.commit()
        return Attempt(False)
    attempts, account_status, key_expired = row
    if account_status != "active":
        if attempts == 0:
            reason = f"account became {account_status} after the request was claimed; nothing was paid"
            conn.execute(
                """UPDATE investment.withdrawal_requests SET status = 'rejected', rejection_reason = %s,
                          processed_at = now(), updated_at = now() WHERE id = %s""", (reason, request_id))
            conn.commit()
            log.warning("withdrawal %s rejected at pay time: %s", request_id, reason)
            return Attempt(False, outcome="rejected", detail=reason)
        conn.commit()
        why = (f"account became {account_status} after an earlier payout attempt; a payout may exist: "
               "check Stripe (metadata withdrawal_request_id) before deciding")
        flag_operator(conn, request_id, why, ACCOUNT_NOT_PAYABLE)
        return Attempt(False, outcome="conflicts", detail=why)
    conn.execute(
        """
        UPDATE investment.withdrawal_requests
        SET payout_attempts = payout_attempts + 1, first_attempt_at = coalesce(first_attempt_at, now()),
            last_attempt_at = now(), updated_at = now()
        WHERE id = %s
        """, (request_id,))
    conn.commit()
    return Attempt(True, look_up_first=bool(key_expired))


def pay_one(conn: psycopg.Connection, client: StripeClient, request: Payable, key_window: timedelta,
            rate_limit_attempts: int) -> tuple[str, str | None]:
    """One request's payout: the committed attempt, the call, the committed answer."""
    import stripe

    attempt = begin_attempt(conn, request.request_id, key_window)
    if not attempt.proceed:
        return attempt.outcome, attempt.detail
    if attempt.look_up_first:
        found = find_payout_by_metadata(client, request.request_id)
        if found is not None:
            record_payout(conn, request, found)
            return "payouts_found", None
        # None exists: Stripe's key window starts again with this attempt.
        conn.execute("UPDATE investment.withdrawal_requests SET first_attempt_at = now() WHERE id = %s",
                     (request.request_id,))
        conn.commit()
    params = payout_params(request_id=request.request_id, account_id=request.account_id, user_id=request.user_id,
                           amount_minor=request.amount_minor, currency=request.currency,
                           destination=request.destination)
    try:
        payout = create_payout(client, params, idempotency_key(request.request_id), rate_limit_attempts)
    except stripe.StripeError as exc:
        verdict = classify_error(exc)
        detail = f"{verdict.code}: {verdict.message}"
        if verdict.kind == DEFINITE:
            record_failure(conn, request.request_id, verdict.code, verdict.message)
            log.warning("withdrawal %s failed at Stripe: %s", request.request_id, detail)
            return "failed", detail
        if verdict.kind == PLATFORM:
            record_ambiguous(conn, request.request_id, f"not attempted: Stripe refused the platform's key ({detail})")
            raise StripeRefusedThePlatform(
                f"Stripe refused the API key of connection 'stripe_default' ({detail}); this and every other "
                "request stays where it was, nothing was paid or failed. Fix the key (Admin → Connections → "
                "stripe_default → Test); the next run pays them, each once, with the same idempotency keys"
            ) from None
        if verdict.kind == CONFLICT:
            flag_operator(conn, request.request_id, f"idempotency key conflict at Stripe ({detail}); "
                          "a payout may exist: check Stripe, then set the request's state by hand",
                          IDEMPOTENCY_CONFLICT)
            return "conflicts", detail
        assert verdict.kind == AMBIGUOUS
        record_ambiguous(conn, request.request_id, detail)
        log.warning("withdrawal %s: ambiguous answer from Stripe, stays processing: %s",
                    request.request_id, detail)
        return "ambiguous", detail
    record_payout(conn, request, payout)
    return "payouts_created", None


def create_payout(client: StripeClient, params: dict[str, Any], key: str, rate_limit_attempts: int) -> Payout:
    """stripe-python retries connection errors, 409 and 5xx with the same key; we add 429s (a
    refused request stores nothing at Stripe, so its retry executes afresh)."""
    import stripe
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    retrying = Retrying(stop=stop_after_attempt(max(rate_limit_attempts, 1)),
                        wait=wait_exponential(multiplier=0.5, max=8),
                        retry=retry_if_exception_type(stripe.RateLimitError), reraise=True)
    return retrying(lambda: client.v1.payouts.create(params=params, options={"idempotency_key": key}))


def _request_id_of(payout: Payout) -> str | None:
    metadata = payout.metadata.to_dict() if payout.metadata else {}
    return metadata.get("withdrawal_request_id")


def find_payout_by_metadata(client: StripeClient, request_id: str) -> Payout | None:
    """Past the key window: the payout this request made, if any, by its metadata."""
    for payout in client.v1.payouts.list(params={"limit": 100}).auto_paging_iter():
        if _request_id_of(payout) == request_id:
            return payout
    return None


def record_payout(conn: psycopg.Connection, request: Payable, payout: Payout) -> None:
    """Store the payout id at once; a payout that is not this request's is an operator's matter."""
    if (_request_id_of(payout) != request.request_id or payout.amount != request.amount_minor
            or payout.currency != request.currency):
        flag_operator(conn, request.request_id,
                      f"Stripe answered with payout {payout.id} that does not match the request "
                      f"({payout.amount} {payout.currency}); check it before anything else", PAYOUT_MISMATCH)
        return
    conn.execute(
        """
        UPDATE investment.withdrawal_requests
        SET payout_id = %s, payout_status = %s, last_error = NULL, updated_at = now()
        WHERE id = %s AND status = 'processing'
        """, (payout.id, payout.status, request.request_id))
    conn.commit()


def record_failure(conn: psycopg.Connection, request_id: str, code: str, message: str) -> None:
    """A definite refusal: no payout was made, so the reservation is released."""
    conn.execute(
        """
        UPDATE investment.withdrawal_requests
        SET status = 'failed', failure_code = %s, failure_message = %s, last_error = NULL,
            processed_at = now(), updated_at = now()
        WHERE id = %s AND status = 'processing'
        """, (code, message, request_id))
    conn.commit()


def record_ambiguous(conn: psycopg.Connection, request_id: str, detail: str) -> None:
    conn.execute(
        "UPDATE investment.withdrawal_requests SET last_error = %s, updated_at = now() WHERE id = %s",
        (detail[:1000], request_id))
    conn.commit()


def flag_operator(conn: psycopg.Connection, request_id: str, why: str, case: str) -> None:
    """Hold one request for a person: the job stops touching it (but a ``balance_uncovered`` one)."""
    conn.execute(
        """UPDATE investment.withdrawal_requests SET needs_operator = %s, operator_case = %s, updated_at = now()
           WHERE id = %s""", (why[:1000], case, request_id))
    conn.commit()
    log.error("withdrawal %s needs an operator: %s", request_id, why)


# --- 3. settle ---------------------------------------------------------------------------------
def settle(conn: psycopg.Connection, client: StripeClient, watch: timedelta) -> dict[str, Any]:
    """Read back every payout still in flight, and those completed within ``watch``, and apply
    what Stripe says in set-based transactions."""
    rows = conn.execute(
        """
        SELECT w.id::text, w.payout_id, w.status, w.first_attempt_at
        FROM investment.withdrawal_requests w
        WHERE w.payout_id IS NOT NULL
          AND (w.needs_operator IS NULL OR w.operator_case = %s)
          AND (w.status = 'processing' OR (w.status = 'completed' AND w.processed_at >= now() - %s))
        """, (BALANCE_UNCOVERED, watch)).fetchall()
    conn.commit()
    counts: dict[str, Any] = {"completed": 0, "completed_amounts": {}, "failed": 0, "failed_amounts": {},
                              "reversed": 0, "reversed_amounts": {}, "in_flight": 0, "uncovered": 0,
                              "unknown_at_stripe": 0, "unread": 0}
    if not rows:
        return counts
    oldest: datetime = min((r[3] for r in rows if r[3] is not None), default=datetime.now(UTC))  # clock-ok
    payouts, unknown, unread = read_payouts(client, {r[1] for r in rows}, since=oldest - timedelta(hours=1))
    to_complete, to_fail, to_reverse, in_flight = [], [], [], []
    for request_id, payout_id, status, _ in rows:
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
    if to_fail:
        counts.update(fail_processing(conn, to_fail))
    if to_reverse:
        counts.update(reverse(conn, to_reverse))
    return counts


def read_payouts(client: StripeClient, ids: set[str], since: datetime
                 ) -> tuple[dict[str, Payout], dict[str, str], dict[str, str]]:
    """One listing of the payouts created since ``since`` (100 per page), then a read of each one the
    listing did not show. Returns (payouts, unknown to Stripe, could not be read): one payout's
    trouble stays that payout's. Stripe refusing the platform's key stops the step."""
    import stripe

    found: dict[str, Payout] = {}
    unknown: dict[str, str] = {}
    unread: dict[str, str] = {}
    try:
        listing = client.v1.payouts.list(params={"limit": 100, "created": {"gte": int(since.timestamp())}})
        for payout in listing.auto_paging_iter():
            if payout.id in ids:
                found[payout.id] = payout
                if len(found) == len(ids):
                    break
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise _platform_refused(exc) from None
    for payout_id in ids - found.keys():
        try:
            found[payout_id] = client.v1.payouts.retrieve(payout_id)
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise _platform_refused(exc) from None
        except stripe.InvalidRequestError as exc:
            if getattr(exc, "http_status", None) == 404 or getattr(exc, "code", None) == "resource_missing":
                unknown[payout_id] = f"HTTP 404 {(exc.user_message or 'No such payout')[:200]}"
            else:
                unread[payout_id] = f"{type(exc).__name__}: {(exc.user_message or '')[:200]}"
        except stripe.StripeError as exc:
            unread[payout_id] = f"{type(exc).__name__}: {(exc.user_message or '')[:200]}"
    return found, unknown, unread


def _platform_refused(exc: Exception) -> StripeRefusedThePlatform:
    verdict = classify_error(exc)
    return StripeRefusedThePlatform(
        f"Stripe refused the API key of connection 'stripe_default' ({verdict.code}: {verdict.message}); no "
        "request was changed. Fix the key (Admin → Connections → stripe_default → Test); the next run settles them")


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


def _amounts_by_currency(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """Amounts per currency of one of this module's own temp tables (a fixed name, not input)."""
    return {c: str(t) for c, t in conn.execute(
        f"SELECT currency, sum(amount) FROM {table} GROUP BY currency ORDER BY currency").fetchall()}


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
        amounts = _amounts_by_currency(conn, "completing")
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
    amounts = _amounts()
    for currency, amount in rows:
        amounts[currency] += amount
    return {"failed": len(rows), "failed_amounts": _text(amounts)}


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
        amounts = _amounts_by_currency(conn, "reversing")
    for rid, _, code, message in reversals:
        log.error("withdrawal %s: payout failed after it was paid (%s: %s); reversed", rid, code, message)
    return {"reversed": done, "reversed_amounts": amounts}


# --- 4. notify the ML engine ---------------------------------------------------------------------
def deliver_notifications(conn: psycopg.Connection, engine: MLEngineClient, batch_size: int) -> dict[str, Any]:
    """Post pending outbox rows, oldest first. A transient failure (after the client's retries)
    stops the batch: the engine is likely down, the rest wait for the next run. A 4xx refuses
    that row for an operator. Never touches a withdrawal request."""
    from investment_jobs.ml_engine.client import PermanentEngineError, TransientEngineError

    rows = conn.execute(
        """
        SELECT withdrawal_request_id::text, payload FROM investment.withdrawal_notifications
        WHERE status = 'pending' ORDER BY created_at, withdrawal_request_id LIMIT %s
        """, (batch_size,)).fetchall()
    conn.commit()
    delivered = refused = 0
    stopped_by: str | None = None
    for request_id, payload in rows:
        try:
            engine.notify_withdrawal(payload)
        except TransientEngineError as exc:
            stopped_by = str(exc)
            conn.execute(
                "UPDATE investment.withdrawal_notifications SET attempts = attempts + 1, last_error = %s,"
                " updated_at = now() WHERE withdrawal_request_id = %s", (stopped_by, request_id))
            conn.commit()
            break
        except PermanentEngineError as exc:
            refused += 1
            conn.execute(
                "UPDATE investment.withdrawal_notifications SET status = 'refused', attempts = attempts + 1,"
                " last_error = %s, updated_at = now() WHERE withdrawal_request_id = %s", (str(exc)[:1000], request_id))
            conn.commit()
            continue
        delivered += 1
        conn.execute(
            "UPDATE investment.withdrawal_notifications SET status = 'delivered', attempts = attempts + 1,"
            " last_error = NULL, delivered_at = now(), updated_at = now() WHERE withdrawal_request_id = %s",
            (request_id,))
        conn.commit()
    pending = conn.execute(
        "SELECT count(*) FROM investment.withdrawal_notifications WHERE status = 'pending'").fetchone()[0]
    conn.commit()
    return {"notifications_delivered": delivered, "notifications_refused": refused,
            "notifications_pending": pending, "notification_error": stopped_by}


# --- 5. summary ----------------------------------------------------------------------------------
def book_state(conn: psycopg.Connection) -> dict[str, Any]:
    """What is open after the run, whoever left it: in flight, awaiting an operator or a transfer."""
    processing = conn.execute(
        """
        SELECT count(*) FILTER (WHERE payout_id IS NOT NULL AND needs_operator IS NULL),
               count(*) FILTER (WHERE payout_id IS NULL AND needs_operator IS NULL AND last_error IS NOT NULL)
        FROM investment.withdrawal_requests WHERE status = 'processing'
        """).fetchone()
    needing = conn.execute(
        """
        SELECT id::text, needs_operator FROM investment.withdrawal_requests
        WHERE status = 'processing' AND needs_operator IS NOT NULL ORDER BY id LIMIT %s
        """, (SUMMARY_ID_LIMIT,)).fetchall()
    needing_count = conn.execute(
        "SELECT count(*) FROM investment.withdrawal_requests WHERE status = 'processing' AND needs_operator IS NOT NULL"
    ).fetchone()[0]
    manual = conn.execute(
        """
        SELECT p.currency, count(*), sum(w.amount)
        FROM investment.withdrawal_requests w
        JOIN investment.accounts a ON a.id = w.account_id JOIN investment.products p ON p.id = a.product_id
        WHERE w.status = 'approved' AND w.withdrawal_method = 'bank_transfer'
        GROUP BY p.currency ORDER BY p.currency
        """).fetchall()
    refused = conn.execute(
        "SELECT count(*) FROM investment.withdrawal_notifications WHERE status = 'refused'").fetchone()[0]
    conn.commit()
    return {
        "payouts_in_flight": processing[0],
        "awaiting_retry": processing[1],
        "needs_operator": needing_count,
        "needs_operator_requests": [{"withdrawal_request_id": rid, "why": why} for rid, why in needing],
        "awaiting_manual_transfer": sum(n for _, n, _ in manual),
        "awaiting_manual_transfer_amounts": {c: str(total) for c, _, total in manual},
        "notifications_refused": refused,
    }


def outcomes(steps: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The run's counts per outcome and amounts per currency, from the steps' own counts."""
    claim_, pay_, settle_ = (steps.get(k) or {} for k in ("claim", "pay", "settle"))
    failed = _amounts()
    for part in (pay_.get("failed_amounts", {}), settle_.get("failed_amounts", {})):
        for currency, amount in part.items():
            failed[currency] += Decimal(amount)
    return {
        "claimed": claim_.get("claimed", 0), "rejected": claim_.get("rejected", 0) + pay_.get("rejected", 0),
        "payouts_created": pay_.get("payouts_created", 0) + pay_.get("payouts_found", 0),
        "completed": settle_.get("completed", 0), "failed": pay_.get("failed", 0) + settle_.get("failed", 0),
        "reversed": settle_.get("reversed", 0),
        "amounts": {"claimed": claim_.get("claimed_amounts", {}), "rejected": claim_.get("rejected_amounts", {}),
                    "completed": settle_.get("completed_amounts", {}), "failed": _text(failed),
                    "reversed": settle_.get("reversed_amounts", {})},
    }


def check_outcome(summary: dict[str, Any]) -> None:
    """Fail the run when requests need an operator or payouts stayed ambiguous; both stay listed."""
    problems = []
    if summary.get("needs_operator"):
        problems.append(f"{summary['needs_operator']} withdrawal request(s) need an operator "
                        "(see needs_operator_requests)")
    if summary.get("steps_failed"):
        problems.append(f"step(s) {', '.join(summary['steps_failed'])} failed; requests they left in "
                        "processing are retried with the same idempotency key by the next run")
    if problems:
        raise WithdrawalsNeedOperator("; ".join(problems))
