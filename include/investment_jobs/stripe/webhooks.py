"""Stripe webhook events: the signature check and what the inbox keeps of an event. Pure.

Stripe signs each delivery with the endpoint's secret (header ``Stripe-Signature``: a timestamp
and an HMAC-SHA256 of ``"<timestamp>.<body>"``). stripe-python checks it, and refuses a timestamp
older than the tolerance (a replayed delivery) or a body that is not the one signed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HANDLED = ("payout.", "transfer.")  # payout.* and transfer.* (transfer.reversed among them)


class WebhookRejected(ValueError):
    """The delivery is not a genuine, well-formed Stripe event: answered 400, nothing stored."""


@dataclass(frozen=True)
class InboxEvent:
    id: str
    type: str
    account: str | None  # the connected account the event happened on
    object_type: str
    object_id: str
    object_status: str | None
    created: datetime
    payload: dict[str, Any]


def verify(payload: bytes, signature: str | None, secret: str, tolerance_seconds: int) -> dict[str, Any]:
    """The event, if ``signature`` is Stripe's for ``payload`` within the tolerance; else WebhookRejected
    (whose message never holds the secret)."""
    import stripe

    if not signature:
        raise WebhookRejected("no Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(f"signature check failed: {exc.user_message or 'no valid signature'}") from None
    except UnicodeDecodeError:
        raise WebhookRejected("body is not UTF-8") from None
    try:
        event = json.loads(payload)
    except ValueError:
        raise WebhookRejected("body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("body is not an event object")
    return event


def inbox_event(event: dict[str, Any]) -> InboxEvent | None:
    """What the inbox keeps of a verified event; None for a type the jobs do not handle."""
    event_type = event.get("type")
    obj = (event.get("data") or {}).get("object")
    if not isinstance(event_type, str) or not isinstance(obj, dict):
        raise WebhookRejected("event has no type or data.object")
    if not event_type.startswith(HANDLED):
        return None
    event_id, object_id, created = event.get("id"), obj.get("id"), event.get("created")
    if not (isinstance(event_id, str) and event_id.startswith("evt_") and isinstance(object_id, str)
            and isinstance(created, int)):
        raise WebhookRejected("event has no evt_ id, object id or created time")
    object_type = str(obj.get("object") or event_type.split(".")[0])
    if object_type == "transfer":
        status = "reversed" if obj.get("reversed") or event_type == "transfer.reversed" else "created"
    else:
        status = obj.get("status")
    return InboxEvent(event_id, event_type, event.get("account"), object_type, object_id, status,
                      datetime.fromtimestamp(created, UTC), event)
