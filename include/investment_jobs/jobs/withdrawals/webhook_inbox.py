"""The webhook inbox (``investment.stripe_events``): events stored once per id, read by settle.

A duplicate delivery is the same primary key and is not stored again. Order does not matter:
a payout's final word is the most final status any of its events reported (``failed`` or
``canceled`` over ``paid``: a paid payout can still fail, a failed one is never paid), so events
applied in any order, any number of times, settle a request once (settle's writes are guarded by
the request's state). An event whose object no request knows is kept, and reported by settle.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from investment_jobs.config import SUMMARY_ID_LIMIT
from investment_jobs.stripe.calls import Payout

if TYPE_CHECKING:
    import psycopg

    from investment_jobs.stripe.webhooks import InboxEvent

# How long an event may wait for its object to be recorded (a payout id is committed just after
# Stripe answers; its webhook can arrive first) before it is reported as unknown.
UNMATCHED_AFTER = "1 hour"


def store_event(conn: psycopg.Connection, event: InboxEvent) -> bool:
    """Keep one verified event; False when its id was stored before (a duplicate delivery)."""
    with conn.transaction():
        stored = conn.execute(
            """
            INSERT INTO investment.stripe_events (id, type, account, object_type, object_id, object_status,
                                                  stripe_created_at, payload)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (id) DO NOTHING
            """, (event.id, event.type, event.account, event.object_type, event.object_id, event.object_status,
                  event.created, json.dumps(event.payload))).rowcount
    return bool(stored)


def final_payout_states(conn: psycopg.Connection, payout_ids: list[str]) -> dict[str, Payout]:
    """Per payout, the most final status its events reported, if final (paid, failed, canceled)."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (object_id) object_id, object_status, account, payload->'data'->'object'
        FROM investment.stripe_events
        WHERE object_type = 'payout' AND object_id = ANY(%s) AND object_status IN ('paid', 'failed', 'canceled')
        ORDER BY object_id, (object_status <> 'paid') DESC, stripe_created_at DESC
        """, (payout_ids,)).fetchall()
    conn.commit()
    out: dict[str, Payout] = {}
    for payout_id, status, account, obj in rows:
        metadata: dict[str, Any] = obj.get("metadata") or {}
        out[payout_id] = Payout(payout_id, int(obj.get("amount") or 0), str(obj.get("currency") or ""), status,
                                metadata.get("withdrawal_request_id"), obj.get("failure_code"),
                                obj.get("failure_message"), obj.get("created"), None, account, from_webhook=True)
    return out


def mark_events_applied(conn: psycopg.Connection, payout_ids: list[str]) -> dict[str, Any]:
    """After settle: the events of these payouts (and of our transfers) are applied; events whose
    object no request knows after ``UNMATCHED_AFTER`` are marked unknown. Returns those, for the summary."""
    with conn.transaction():
        conn.execute(
            """
            UPDATE investment.stripe_events e SET applied_at = now(), outcome = 'applied'
            WHERE e.applied_at IS NULL AND (e.object_id = ANY(%s) OR EXISTS (
                SELECT 1 FROM investment.withdrawal_requests w WHERE w.transfer_id = e.object_id))
            """, (payout_ids,))
        unknown = conn.execute(
            f"""
            UPDATE investment.stripe_events e SET applied_at = now(), outcome = 'unknown_object'
            WHERE e.applied_at IS NULL AND e.received_at < now() - interval '{UNMATCHED_AFTER}'
              AND NOT EXISTS (SELECT 1 FROM investment.withdrawal_requests w
                              WHERE w.payout_id = e.object_id OR w.transfer_id = e.object_id)
            RETURNING e.id, e.type, e.object_id
            """).fetchall()  # noqa: S608 - a constant of this module
    return {"events_unknown": len(unknown),
            "unknown_events": [{"event": i, "type": t, "object": o} for i, t, o in unknown[:SUMMARY_ID_LIMIT]]}


def open_unknown_events(conn: psycopg.Connection) -> int:
    """Events kept for an object no request knows: what the summary and the reconciliation report."""
    count = conn.execute(
        "SELECT count(*) FROM investment.stripe_events WHERE outcome = 'unknown_object'").fetchone()[0]
    conn.commit()
    return int(count)
