"""``POST /stripe/webhooks``: signed events into the inbox, and settle applying them.

The endpoint is the plugin's own FastAPI app, served by uvicorn on a real port; deliveries come
from the Stripe stand-in (signed like Stripe's) or are signed here with the same rule.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from investment_jobs_dev.standins.stripe_webhooks import signature_header
from tests.support.airflow_runs import run_dag
from tests.support.withdrawals import accounts_by_currency, add_request, requests

pytestmark = pytest.mark.integration

SECRET = "whsec_test_" + "s3cr3t" * 4


@pytest.fixture
def endpoint(investment_db, monkeypatch) -> Iterator[str]:
    """The webhook app on a free port, with connection ``stripe_webhook`` holding the secret."""
    import uvicorn

    from investment_jobs.operations.webhook_endpoint import create_app

    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_WEBHOOK", json.dumps({"conn_type": "stripe", "password": SECRET}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the webhook app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/webhooks"
    server.should_exit = True
    thread.join(timeout=30)


def event(type_: str, obj: dict, *, event_id: str | None = None, created: int | None = None) -> dict:
    return {"id": event_id or f"evt_{abs(hash((type_, obj['id'], created))):x}", "object": "event",
            "type": type_, "created": created or int(time.time()), "data": {"object": obj}}


def deliver(url: str, body: dict, *, secret: str = SECRET, age_seconds: int = 0, tamper: bool = False) -> httpx.Response:
    payload = json.dumps(body).encode()
    header = signature_header(payload, secret, int(time.time()) - age_seconds)
    if tamper:
        payload = payload.replace(b'"object": "event"', b'"object": "evil"')
    return httpx.post(url, content=payload, headers={"Stripe-Signature": header,
                                                     "Content-Type": "application/json"}, timeout=30)


def inbox(book) -> list[tuple]:
    return book.query("SELECT id, type, object_id, object_status FROM investment.stripe_events ORDER BY id")


PAYOUT = {"id": "po_webhook1", "object": "payout", "amount": 1000, "currency": "usd", "status": "paid",
          "metadata": {"withdrawal_request_id": "r"}}


@pytest.mark.parametrize(("case", "kwargs", "why"), [
    ("a signature made with another secret", {"secret": "whsec_other"}, "signature"),
    ("a timestamp older than the tolerance (a replay)", {"age_seconds": 3600}, "signature"),
    ("a body changed after it was signed", {"tamper": True}, "signature"),
])
def test_a_delivery_that_is_not_stripes_is_refused_and_nothing_is_stored(book, endpoint, case, kwargs, why):
    response = deliver(endpoint, event("payout.paid", PAYOUT), **kwargs)
    assert response.status_code == 400, case
    assert why in response.json()["error"]
    assert SECRET not in response.text
    assert inbox(book) == []


def test_no_signature_or_no_json_is_refused(book, endpoint):
    assert httpx.post(endpoint, content=b"{}", timeout=30).status_code == 400
    payload = b"not json"
    header = signature_header(payload, SECRET, int(time.time()))
    response = httpx.post(endpoint, content=payload, headers={"Stripe-Signature": header}, timeout=30)
    assert (response.status_code, response.json()["error"]) == (400, "body is not JSON")
    assert inbox(book) == []


def test_a_clock_skew_inside_the_tolerance_is_accepted_and_a_duplicate_stored_once(book, endpoint):
    body = event("payout.paid", PAYOUT, event_id="evt_once")
    first = deliver(endpoint, body, age_seconds=120)
    again = deliver(endpoint, body)
    assert (first.status_code, first.json()["stored"]) == (200, True)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    assert inbox(book) == [("evt_once", "payout.paid", "po_webhook1", "paid")]


def test_other_event_types_are_acknowledged_and_dropped(book, endpoint):
    response = deliver(endpoint, event("charge.succeeded", {"id": "ch_1", "object": "charge"}))
    assert response.status_code == 200 and "ignored" in response.json()
    assert inbox(book) == []


# --- deliveries from the stand-in, applied by settle -------------------------------------------------
RUN_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _settle():
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import settle
    from investment_jobs.stripe.hook import StripeHook

    with connect() as conn:
        return settle.settle_payouts(conn, StripeHook().get_conn(), timedelta(days=10))


def _claim_and_pay():
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, pay
    from investment_jobs.stripe.hook import StripeHook

    with connect() as conn:
        claim.claim_requests(conn, "webhook-run", 100)
        pay.pay_requests(conn, StripeHook().get_conn(), timedelta(hours=23))


@pytest.mark.parametrize("delivery", [
    {}, {"duplicate": True}, {"out_of_order": True}, {"duplicate": True, "out_of_order": True},
    {"fail_next": 2}, {"delay_seconds": 1.0},
], ids=["once", "duplicated", "newest first", "duplicated and newest first", "failed twice, then retried",
        "delayed"])
def test_settle_applies_what_the_webhooks_said_without_reading_the_payouts(book, stripe_standin, endpoint,
                                                                           airflow_db, delivery):
    stripe = stripe_standin
    stripe.webhooks(endpoint, SECRET, hold=True, **delivery)
    stripe.faults(hold=True)  # payouts stay in transit until the banks answer
    accounts = accounts_by_currency(book)["usd"]
    paid, failed = add_request(book, accounts[0], "11.00"), add_request(book, accounts[1], "12.00", created_offset=1)
    _claim_and_pay()
    ids = {r: requests(book)[r]["payout_id"] for r in (paid, failed)}
    stripe.set_payout(ids[failed], status="paid")
    stripe.set_payout(ids[failed], status="failed", failure_code="account_closed",
                      failure_message="The bank account has been closed.")  # paid, then failed: two events
    stripe.set_payout(ids[paid], status="paid")
    for _ in range(5):  # failed deliveries stay queued and go again, as Stripe retries
        stripe.flush_webhooks()
        if not stripe.events()["pending"]:
            break
    assert not stripe.events()["pending"]
    stored = {row[2]: row for row in inbox(book)}
    assert set(stored) >= set(ids.values())
    events = stripe.events()["events"]
    assert len(inbox(book)) == len(events)  # each event once, however often it came
    reads_before = stripe.stats()["stats"].get("GET /v1/payouts/{id}", 0), stripe.stats()["stats"].get("GET /v1/payouts", 0)
    counts = _settle()
    assert counts["from_webhooks"] == 2
    assert (counts["completed"], counts["failed"]) == (1, 1)
    assert (stripe.stats()["stats"].get("GET /v1/payouts/{id}", 0),
            stripe.stats()["stats"].get("GET /v1/payouts", 0)) == reads_before  # Stripe was not asked
    assert requests(book)[paid]["status"] == "completed"
    assert (requests(book)[failed]["status"], requests(book)[failed]["failure_code"]) == ("failed", "account_closed")
    assert book.query("SELECT count(*) FROM investment.stripe_events WHERE applied_at IS NULL AND object_id = ANY(%s)",
                      (list(ids.values()),))[0][0] == 0
    again = _settle()  # the same events, applied again: nothing changes twice
    assert (again["completed"], again["failed"], again["reversed"]) == (0, 0, 0)
    assert book.query("SELECT count(*) FROM investment.transactions")[0][0] == 1


def test_an_event_for_a_payout_no_request_knows_is_kept_and_reported(book, endpoint, stripe_standin):
    stranger = {**PAYOUT, "id": "po_stranger"}
    assert deliver(endpoint, event("payout.paid", stranger, event_id="evt_stranger")).status_code == 200
    with book.connect() as conn:  # it arrived more than an hour ago and still matches nothing
        conn.execute("UPDATE investment.stripe_events SET received_at = now() - interval '2 hours'")
    accounts = accounts_by_currency(book)["usd"]
    add_request(book, accounts[0], "1.00")
    _claim_and_pay()
    counts = _settle()
    assert counts["events_unknown"] == 1
    assert counts["unknown_events"] == [{"event": "evt_stranger", "type": "payout.paid", "object": "po_stranger"}]
    assert book.query("SELECT outcome FROM investment.stripe_events WHERE id = 'evt_stranger'") == [("unknown_object",)]


def test_a_run_settles_from_the_stand_ins_background_deliveries(book, stripe_standin, endpoint, airflow_db):
    """The whole path: the stand-in's own sender delivers as the banks answer; the next run settles."""
    stripe = stripe_standin
    stripe.webhooks(endpoint, SECRET)
    stripe.faults(hold=True)
    request_id = add_request(book, accounts_by_currency(book)["usd"][0], "5.00")
    assert str(run_dag("withdrawal_processing", RUN_AT).state) == "success"
    assert requests(book)[request_id]["status"] == "processing"
    stripe.advance()
    payout_id = requests(book)[request_id]["payout_id"]
    deadline = time.monotonic() + 120
    while not book.query("SELECT 1 FROM investment.stripe_events WHERE object_id = %s AND object_status = 'paid'",
                         (payout_id,)):
        assert time.monotonic() < deadline, stripe.events()["attempts"]
        time.sleep(0.2)
    assert str(run_dag("withdrawal_processing", RUN_AT).state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
