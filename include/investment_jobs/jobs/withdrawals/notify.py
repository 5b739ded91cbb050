"""Step 4, notify: tell the ML engine of each completed withdrawal, from the outbox written with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from investment_jobs.ml_engine.client import MLEngineClient

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
