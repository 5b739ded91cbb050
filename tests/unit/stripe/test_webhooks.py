"""Webhook signatures and inbox rows without a server: stripe-python's check on our stand-in's
signing, and what the inbox keeps of each kind of event."""

from __future__ import annotations

import json
import time

import pytest

from investment_jobs.stripe.webhooks import WebhookRejected, inbox_event, verify
from investment_jobs_dev.standins.stripe_webhooks import signature_header

SECRET = "whsec_unit"


def signed(body: dict, *, secret: str = SECRET, age: int = 0) -> tuple[bytes, str]:
    payload = json.dumps(body).encode()
    return payload, signature_header(payload, secret, int(time.time()) - age)


EVENT = {"id": "evt_1", "type": "payout.failed", "created": 1767225600, "account": "acct_1",
         "data": {"object": {"id": "po_1", "object": "payout", "status": "failed"}}}


def test_a_signed_event_verifies_and_keeps_its_object_and_status() -> None:
    payload, header = signed(EVENT, age=240)  # inside the 300 s tolerance with room for a slow machine
    event = inbox_event(verify(payload, header, SECRET, 300))
    assert event is not None
    assert (event.id, event.type, event.account, event.object_type, event.object_id, event.object_status) == (
        "evt_1", "payout.failed", "acct_1", "payout", "po_1", "failed")


@pytest.mark.parametrize(("case", "change"), [
    ("no header", lambda p, h: (p, None)),
    ("another secret", lambda p, h: signed(EVENT, secret="whsec_other")),
    ("too old", lambda p, h: signed(EVENT, age=301)),
    ("body changed", lambda p, h: (p.replace(b"failed", b"paid"), h)),
    ("garbage header", lambda p, h: (p, "t=abc,v1=zz")),
])
def test_what_is_not_stripes_is_rejected_without_the_secret(case, change) -> None:
    payload, header = change(*signed(EVENT))
    with pytest.raises(WebhookRejected) as refused:
        verify(payload, header, SECRET, 300)
    assert SECRET not in str(refused.value), case


@pytest.mark.parametrize(("event", "expected"), [
    ({"type": "transfer.reversed", "data": {"object": {"id": "tr_1", "object": "transfer", "reversed": True}}},
     ("transfer", "tr_1", "reversed")),
    ({"type": "transfer.created", "data": {"object": {"id": "tr_1", "object": "transfer", "reversed": False}}},
     ("transfer", "tr_1", "created")),
    ({"type": "payout.paid", "data": {"object": {"id": "po_1", "object": "payout", "status": "paid"}}},
     ("payout", "po_1", "paid")),
    ({"type": "charge.succeeded", "data": {"object": {"id": "ch_1", "object": "charge"}}}, None),
])
def test_what_the_inbox_keeps_of_each_event(event, expected) -> None:
    kept = inbox_event({"id": "evt_x", "created": 1, **event})
    assert (None if kept is None else (kept.object_type, kept.object_id, kept.object_status)) == expected


@pytest.mark.parametrize("broken", [{"type": "payout.paid"}, {"type": "payout.paid", "data": {"object": {"id": "po"}}},
                                    {"id": "nope", "type": "payout.paid", "created": 1,
                                     "data": {"object": {"id": "po"}}}])
def test_an_event_without_its_ids_is_rejected(broken) -> None:
    with pytest.raises(WebhookRejected):
        inbox_event(broken)
