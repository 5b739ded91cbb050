"""Connect payments: giving a transfer back when its payout failed, exactly once.

A Connect withdrawal moved the money to the investor's connected account before the payout; when
that payout is refused or fails (at once, or after ``paid`` when the bank returns it), the money
sits on the connected account. Before settle fails or reverses the request, the transfer is
reversed (``POST /v1/transfers/{id}/reversals``, key ``withdrawal-<id>-transfer-reversal``) and
the reversal's id committed. The transfer is read first: a reversal made earlier (a crash after
the call, or past the key window) is found there and recorded, never made twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from investment_jobs.jobs.withdrawals.state import (
    TRANSFER_UNREVERSED,
    flag_operator,
    log,
    platform_refused,
    record_ambiguous,
)
from investment_jobs.stripe.calls import StripeCallError, retrieve_transfer, reverse_transfer
from investment_jobs.stripe.payouts import DEFINITE, PLATFORM, reversal_key

if TYPE_CHECKING:
    import psycopg
    from stripe import StripeClient


@dataclass
class GiveBack:
    settled: set[str] = field(default_factory=set)  # requests settle may now fail or reverse
    made: int = 0  # reversals this run made at Stripe
    refused: list[dict[str, str]] = field(default_factory=list)  # completed ones Stripe would not give back


def give_back_transfers(conn: psycopg.Connection, client: StripeClient, request_ids: list[str],
                        rate_limit_attempts: int = 3) -> GiveBack:
    """Ensure every Connect request of ``request_ids`` whose payout failed has its transfer given
    back; platform payouts (and Connect ones already given back) pass straight through."""
    from investment_jobs.jobs.withdrawals.pay import request_lock

    rows = conn.execute(
        """
        SELECT id::text, transfer_id, transfer_reversal_id, status FROM investment.withdrawal_requests
        WHERE id = ANY(%s::uuid[])
        """, (request_ids,)).fetchall()
    conn.commit()
    result = GiveBack()
    for request_id, transfer_id, reversal_id, status in rows:
        if transfer_id is None or reversal_id is not None:
            result.settled.add(request_id)
            continue
        with request_lock(conn, request_id) as got:
            if not got:
                continue  # another run is on it
            try:
                transfer = retrieve_transfer(client, transfer_id)
                if transfer.amount_reversed >= transfer.amount and transfer.reversal_ids:
                    reversal_id = transfer.reversal_ids[0]
                else:
                    reversal_id = reverse_transfer(
                        client, transfer_id, {"metadata": {"withdrawal_request_id": request_id}},
                        reversal_key(request_id), rate_limit_attempts)
                    result.made += 1
            except StripeCallError as exc:
                if exc.verdict.kind == PLATFORM:
                    raise platform_refused(exc) from None
                detail = f"{exc.verdict.code}: {exc.verdict.message}"
                if exc.verdict.kind == DEFINITE and status == "completed":
                    # a returned payout of a completed withdrawal: not an operator case (those are
                    # processing ones); the run fails and names it, and each run tries again
                    record_ambiguous(conn, request_id, f"transfer {transfer_id} not given back: {detail}")
                    result.refused.append({"withdrawal_request_id": request_id, "transfer_id": transfer_id,
                                           "error": detail})
                    log.error("withdrawal %s: Stripe refused to reverse transfer %s: %s", request_id, transfer_id,
                              detail)
                elif exc.verdict.kind == DEFINITE:
                    flag_operator(conn, request_id,
                                  f"the payout failed, and Stripe refused to reverse transfer {transfer_id} "
                                  f"({detail}): the money is on the connected account; Retry once it can be "
                                  "given back", TRANSFER_UNREVERSED)
                else:
                    record_ambiguous(conn, request_id, f"transfer {transfer_id} not given back yet: {detail}")
                continue
            conn.execute(
                """
                UPDATE investment.withdrawal_requests SET transfer_reversal_id = %s, updated_at = now()
                WHERE id = %s AND transfer_reversal_id IS NULL
                """, (reversal_id, request_id))
            conn.commit()
        log.warning("withdrawal %s: transfer %s given back (%s)", request_id, transfer_id, reversal_id)
        result.settled.add(request_id)
    return result
