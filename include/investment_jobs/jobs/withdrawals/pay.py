"""Step 2, pay: one Stripe payout per processing request without one, each committed before and
after its call, under a per-request advisory lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.jobs.withdrawals.state import (
    ACCOUNT_NOT_PAYABLE,
    IDEMPOTENCY_CONFLICT,
    PAYOUT_MISMATCH,
    StripeRefusedThePlatform,
    amounts_by_currency,
    as_text,
    flag_operator,
    log,
    record_ambiguous,
)
from investment_jobs.stripe.calls import (
    Payout,
    StripeCallError,
    Transfer,
    create_payout,
    create_transfer,
    find_payout_by_metadata,
    find_transfer_by_group,
)
from investment_jobs.stripe.payouts import (
    AMBIGUOUS,
    CONFLICT,
    DEFINITE,
    PLATFORM,
    connected_payout_key,
    destination_of,
    idempotency_key,
    payout_params,
    route_of,
    transfer_group,
    transfer_key,
    transfer_params,
)
from investment_jobs.views.summaries import refresh_payouts_of

if TYPE_CHECKING:
    import psycopg
    from stripe import StripeClient

@dataclass(frozen=True)
class Payable:
    request_id: str
    account_id: str
    user_id: str
    amount: Decimal
    amount_minor: int
    currency: str
    destination: Any  # destination_of's value: a bank account, or connect:<acct>[:<bank account>]

    @property
    def connected_account(self) -> str | None:
        return route_of(self.destination).connected_account


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


def pay_requests(conn: psycopg.Connection, client: StripeClient, key_window: timedelta,
        rate_limit_attempts: int = 3, only: list[str] | None = None) -> dict[str, Any]:
    """Create a payout for every processing request that has none yet (this run's and earlier ones;
    ``only``: just these, the ones a reviewer approved)."""
    rows = conn.execute(
        """
        SELECT w.id::text, w.account_id::text, w.user_id::text, w.amount, w.payout_amount_minor, w.currency,
               w.destination_details
        FROM investment.withdrawal_requests w
        WHERE w.status = 'processing' AND w.payout_id IS NULL AND w.needs_operator IS NULL
          AND w.payout_refused_at IS NULL  -- settle gives its transfer back, then fails it
          AND coalesce(w.review_status, 'approved') = 'approved'  -- a held request waits for its review
          AND (%(only)s::uuid[] IS NULL OR w.id = ANY(%(only)s::uuid[]))
        ORDER BY w.claimed_at, w.id
        """, {"only": only}).fetchall()
    conn.commit()
    counts: dict[str, Any] = {"payouts_created": 0, "payouts_found": 0, "failed": 0, "ambiguous": 0,
                              "conflicts": 0, "skipped_locked": 0, "rejected": 0}
    paid_amounts, failed_amounts = amounts_by_currency(), amounts_by_currency()
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
    counts.update(payout_amounts=as_text(paid_amounts), failed_amounts=as_text(failed_amounts), errors=errors)
    return counts


@dataclass(frozen=True)
class Attempt:
    """What ``begin_attempt`` decided: go on (look up first past the key window), or stop."""

    proceed: bool
    look_up_first: bool = False
    outcome: str = "skipped_locked"  # when not proceeding: skipped_locked, rejected or conflicts
    detail: str | None = None
    transfer_id: str | None = None  # a Connect payment's transfer, once made


def begin_attempt(conn: psycopg.Connection, request_id: str, key_window: timedelta) -> Attempt:
    """Commit the attempt before calling Stripe, after checking the account may still be paid.

    A request another run finished is not ours any more. An account closed or suspended since the
    claim is not paid: with no earlier attempt nothing can exist at Stripe, so the request is
    rejected (its reservation released); after an earlier attempt a payout may exist, so an
    operator decides. Past Stripe's key window the payout is looked up first.
    """
    row = conn.execute(
        """
        SELECT w.payout_attempts, a.status, now() - w.first_attempt_at > %s, w.transfer_id
        FROM investment.withdrawal_requests w JOIN investment.accounts a ON a.id = w.account_id
        WHERE w.id = %s AND w.status = 'processing' AND w.payout_id IS NULL AND w.needs_operator IS NULL
          AND w.payout_refused_at IS NULL AND coalesce(w.review_status, 'approved') = 'approved'
        FOR UPDATE OF w
        """, (key_window, request_id)).fetchone()
    if row is None:
        conn.commit()
        return Attempt(False)
    attempts, account_status, key_expired, transfer_id = row
    if account_status != "active":
        if attempts == 0:
            reason = f"account became {account_status} after the request was claimed; nothing was paid"
            conn.execute(
                """UPDATE investment.withdrawal_requests SET status = 'rejected', rejection_reason = %s,
                          processed_at = now(), updated_at = now() WHERE id = %s""", (reason, request_id))
            refresh_payouts_of(conn, [request_id])  # no longer in flight
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
    return Attempt(True, look_up_first=bool(key_expired), transfer_id=transfer_id)


def pay_one(conn: psycopg.Connection, client: StripeClient, request: Payable, key_window: timedelta,
            rate_limit_attempts: int) -> tuple[str, str | None]:
    """One request's payout: the committed attempt, the call, the committed answer."""
    attempt = begin_attempt(conn, request.request_id, key_window)
    if not attempt.proceed:
        return attempt.outcome, attempt.detail
    if request.connected_account is not None:
        return pay_connected(conn, client, request, attempt, rate_limit_attempts)
    try:
        if attempt.look_up_first:
            found = find_payout_by_metadata(client, request.request_id)
            if found is not None:
                record_payout(conn, request, found)
                return "payouts_found", None
            restart_key_window(conn, request.request_id, attempt)
        params = payout_params(request_id=request.request_id, account_id=request.account_id,
                               user_id=request.user_id, amount_minor=request.amount_minor,
                               currency=request.currency, destination=request.destination)
        payout = create_payout(client, params, idempotency_key(request.request_id), rate_limit_attempts)
    except StripeCallError as exc:
        return answer_error(conn, request, exc, record_failure)
    record_payout(conn, request, payout)
    return "payouts_created", None


def pay_connected(conn: psycopg.Connection, client: StripeClient, request: Payable, attempt: Attempt,
                  rate_limit_attempts: int) -> tuple[str, str | None]:
    """A Connect payment in two steps, each committed before and after its call with its own key: the
    transfer to the investor's connected account (key ``withdrawal-<id>-transfer``), then the payout
    on that account (``withdrawal-<id>-payout``, header ``Stripe-Account``). A crash anywhere leaves
    the step to redo with the same key; past the key window each is first looked up (the transfer by
    its ``transfer_group``, the payout by its metadata on the connected account)."""
    rid, account = request.request_id, request.connected_account
    if attempt.transfer_id is None:
        try:
            transfer = find_transfer_by_group(client, transfer_group(rid)) if attempt.look_up_first else None
            if transfer is None:
                restart_key_window(conn, rid, attempt)
                transfer = create_transfer(client, transfer_params(
                    request_id=rid, account_id=request.account_id, user_id=request.user_id,
                    amount_minor=request.amount_minor, currency=request.currency, connected_account=account),
                    transfer_key(rid), rate_limit_attempts)
        except StripeCallError as exc:  # nothing was moved on a definite refusal: the request fails
            return answer_error(conn, request, exc, record_failure)
        if not record_transfer(conn, request, transfer):
            return "conflicts", f"transfer {transfer.id} does not match the request"
        attempt = Attempt(True)  # the payout's key window starts with it
    try:
        found = (find_payout_by_metadata(client, rid, stripe_account=account)
                 if attempt.look_up_first else None)
        if found is not None:
            record_payout(conn, request, found)
            return "payouts_found", None
        restart_key_window(conn, rid, attempt)
        params = payout_params(request_id=rid, account_id=request.account_id, user_id=request.user_id,
                               amount_minor=request.amount_minor, currency=request.currency,
                               destination=route_of(request.destination).destination)
        payout = create_payout(client, params, connected_payout_key(rid), rate_limit_attempts, stripe_account=account)
    except StripeCallError as exc:  # refused for good: the transfer is given back by settle, then it fails
        return answer_error(conn, request, exc, record_payout_refused)
    record_payout(conn, request, payout)
    return "payouts_created", None


def restart_key_window(conn: psycopg.Connection, request_id: str, attempt: Attempt) -> None:
    """Past the key window nothing was found, so Stripe's window starts again with this call."""
    if attempt.look_up_first:
        conn.execute("UPDATE investment.withdrawal_requests SET first_attempt_at = now() WHERE id = %s",
                     (request_id,))
        conn.commit()


def answer_error(conn: psycopg.Connection, request: Payable, exc: StripeCallError, record_definite: Any
                 ) -> tuple[str, str | None]:
    """What a Stripe error does to the request: a definite refusal recorded by ``record_definite``,
    the platform's key refused (the run stops), a key conflict (an operator), or an ambiguous answer
    (stays processing; the retry uses the same key)."""
    verdict = exc.verdict
    detail = f"{verdict.code}: {verdict.message}"
    if verdict.kind == DEFINITE:
        record_definite(conn, request.request_id, verdict.code, verdict.message)
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


def _at(unix_time: int | None) -> datetime | None:
    return None if unix_time is None else datetime.fromtimestamp(unix_time, UTC)


def record_payout(conn: psycopg.Connection, request: Payable, payout: Payout) -> None:
    """Store the payout id at once; a payout that is not this request's is an operator's matter."""
    if (payout.request_id != request.request_id or payout.amount != request.amount_minor
            or payout.currency != request.currency):
        flag_operator(conn, request.request_id,
                      f"Stripe answered with payout {payout.id} that does not match the request "
                      f"({payout.amount} {payout.currency}); check it before anything else", PAYOUT_MISMATCH)
        return
    conn.execute(
        """
        UPDATE investment.withdrawal_requests
        SET payout_id = %s, payout_status = %s, payout_created_at = coalesce(%s, now()), last_error = NULL,
            updated_at = now()
        WHERE id = %s AND status = 'processing'
        """, (payout.id, payout.status, _at(payout.created), request.request_id))
    conn.commit()


def record_transfer(conn: psycopg.Connection, request: Payable, transfer: Transfer) -> bool:
    """Store the transfer id at once (the payout's key window starts afresh); one that is not this
    request's is an operator's matter."""
    if (transfer.request_id != request.request_id or transfer.amount != request.amount_minor
            or transfer.currency != request.currency or transfer.destination != request.connected_account):
        flag_operator(conn, request.request_id,
                      f"Stripe answered with transfer {transfer.id} that does not match the request "
                      f"({transfer.amount} {transfer.currency} to {transfer.destination}); check it before anything "
                      "else", PAYOUT_MISMATCH)
        return False
    conn.execute(
        """
        UPDATE investment.withdrawal_requests
        SET transfer_id = %s, transfer_created_at = coalesce(%s, now()), first_attempt_at = now(),
            last_error = NULL, updated_at = now()
        WHERE id = %s AND status = 'processing'
        """, (transfer.id, _at(transfer.created), request.request_id))
    conn.commit()
    return True


def record_payout_refused(conn: psycopg.Connection, request_id: str, code: str, message: str) -> None:
    """Stripe refused a Connect payout for good: the money sits on the connected account, so the
    request stays processing until settle has given the transfer back, and then fails."""
    conn.execute(
        """
        UPDATE investment.withdrawal_requests
        SET payout_refused_at = now(), failure_code = %s, failure_message = %s, last_error = NULL, updated_at = now()
        WHERE id = %s AND status = 'processing'
        """, (code, message, request_id))
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
    refresh_payouts_of(conn, [request_id])  # failed, in the same transaction
    conn.commit()


def raise_if_ambiguous(counts: dict[str, Any]) -> None:
    """After the step's summary line: fail the try (Airflow retries it with the same keys) when
    payouts got an ambiguous answer."""
    from investment_jobs.jobs.withdrawals.state import PayoutsStillAmbiguous
    from investment_jobs.operations.run_log import log_summary

    log_summary({"step": "pay", **counts})
    if counts["ambiguous"]:
        raise PayoutsStillAmbiguous(
            f"{counts['ambiguous']} payout(s) got an ambiguous answer from Stripe and stay processing; "
            "the retry uses the same idempotency keys")
