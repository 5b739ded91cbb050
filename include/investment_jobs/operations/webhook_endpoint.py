"""``POST /stripe/webhooks`` on the Airflow API server (a plugin): Stripe's events into the inbox.

Stripe calls it, so it has no Airflow login; what makes a delivery trusted is its signature,
checked with the endpoint's signing secret (connection ``stripe_webhook``, its password) within
``STRIPE_WEBHOOK_TOLERANCE_SECONDS`` (300, Stripe's own default) of the signed timestamp. A bad
signature, an old timestamp or a body that is not an event is answered 400 and nothing is stored;
a verified ``payout.*`` or ``transfer.*`` event is stored once per event id (a duplicate is
answered 200 and changes nothing); other types are acknowledged and dropped. The job's settle step
applies what was stored. Neither the secret nor the signature ever reaches a log or a reply.
"""

from __future__ import annotations

import logging
from typing import Any

from investment_jobs import config

log = logging.getLogger("investment_jobs.webhooks")


def _connection(conn_id: str) -> Any:
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


def receive(payload: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    """Verify, parse and store one delivery: the status code and body to answer Stripe with."""
    from investment_jobs.jobs.withdrawals.webhook_inbox import store_event
    from investment_jobs.stripe.webhooks import WebhookRejected, inbox_event, verify

    secret = _connection(config.STRIPE_WEBHOOK_CONN_ID).password
    if not secret:
        log.error("connection %r has no signing secret: webhook refused", config.STRIPE_WEBHOOK_CONN_ID)
        return 503, {"error": f"connection {config.STRIPE_WEBHOOK_CONN_ID!r} has no signing secret"}
    try:
        event = inbox_event(verify(payload, signature, secret, config.stripe_webhook_tolerance_seconds()))
    except WebhookRejected as exc:
        log.warning("Stripe webhook refused: %s", exc)
        return 400, {"error": str(exc)}
    if event is None:
        return 200, {"ignored": "not a payout or transfer event"}
    from investment_jobs.db.connect import connect_on_server

    with connect_on_server() as conn:
        stored = store_event(conn, event)
    return 200, {"received": event.id, "stored": stored}


def create_app():  # noqa: ANN201 - a FastAPI app
    """The app the plugin mounts at ``/stripe``: ``POST /stripe/webhooks``."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="investment-jobs Stripe webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    async def webhooks(request: Any) -> JSONResponse:  # a starlette Request: the raw body is what is signed
        payload = await request.body()
        status, body = await run_in_threadpool(receive, payload, request.headers.get("Stripe-Signature"))
        return JSONResponse(body, status_code=status)

    app.router.add_route("/webhooks", webhooks, methods=["POST"])
    return app
