"""StripeHook on ``stripe_default`` against the stand-in, and the ``stripe`` connection type."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.integration


def test_connection_test_reads_the_balance(stripe_standin) -> None:
    from investment_jobs.stripe.hook import StripeHook

    stripe_standin.balance(usd=5000, jpy=10)
    ok, message = StripeHook().test_connection()
    assert ok, message
    assert "jpy, usd" in message


def test_a_wrong_key_fails_the_test_without_showing_it(stripe_standin, monkeypatch) -> None:
    from investment_jobs.stripe.hook import StripeHook

    secret = "sk_test_" + "doNotPrintMe0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(
        {"conn_type": "stripe", "host": stripe_standin.url, "password": secret}))
    ok, message = StripeHook().test_connection()
    assert not ok and "AuthenticationError" in message and "Invalid API Key" in message
    assert secret not in message and "doNotPrintMe" not in repr(StripeHook().__dict__)


def test_a_connection_without_a_key_says_so(monkeypatch) -> None:
    from investment_jobs.stripe.hook import StripeHook

    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps({"conn_type": "stripe", "host": "127.0.0.1:1"}))
    ok, message = StripeHook().test_connection()
    assert not ok and message == "connection 'stripe_default' has no secret key (set its password)"


def test_the_base_url_comes_from_the_host(monkeypatch) -> None:
    from investment_jobs.stripe.hook import StripeHook

    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(
        {"conn_type": "stripe", "host": "127.0.0.1", "port": 12111, "password": "sk_test_x"}))
    assert StripeHook().api_base() == "https://127.0.0.1:12111"
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps({"conn_type": "stripe", "password": "sk_test_x"}))
    assert StripeHook().api_base() is None  # Stripe itself


def test_the_package_registers_the_stripe_connection_type(airflow_db) -> None:
    """Through its own apache_airflow_provider entry point, with the form fields it uses."""
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()  # what the API server's connection form reads
    assert "investment-jobs" in manager.providers
    hook = ProvidersManagerTaskRuntime().hooks["stripe"]  # what a task resolves a conn_type with
    assert hook is not None and hook.hook_class_name == "investment_jobs.stripe.hook.StripeHook"
    behaviour = manager.field_behaviours["stripe"]
    assert set(behaviour["hidden_fields"]) == {"schema", "login", "port", "extra"}
    assert behaviour["relabeling"]["password"] == "Secret key"


def test_every_request_pins_the_api_version_the_code_was_written_against(stripe_standin) -> None:
    """A change of the account's default API version at Stripe must not change what the job reads."""
    from investment_jobs.stripe.calls import STRIPE_API_VERSION, available_currencies, payouts_created_since
    from investment_jobs.stripe.hook import StripeHook

    client = StripeHook().get_conn()
    available_currencies(client)
    list(payouts_created_since(client, datetime(2026, 1, 1, tzinfo=UTC)))
    versions = {k: v for k, v in stripe_standin.stats()["stats"].items() if k.startswith("Stripe-Version")}
    assert versions == {f"Stripe-Version: {STRIPE_API_VERSION}": 2}


def test_the_sdk_is_the_one_the_version_was_read_from() -> None:
    """stripe-python's own current version is what calls.py pins: bump both together."""
    from stripe._api_version import _ApiVersion

    from investment_jobs.stripe.calls import STRIPE_API_VERSION

    assert _ApiVersion.CURRENT == STRIPE_API_VERSION


def test_stripe_calls_per_second_paces_every_request_of_a_task(stripe_standin, monkeypatch) -> None:
    """A task paced at the account's limit never meets the stand-in's 429s, however fast it asks."""
    import time

    from investment_jobs.stripe.calls import available_currencies
    from investment_jobs.stripe.hook import StripeHook
    from investment_jobs.stripe.pacing import PacedRequestsClient

    stripe_standin.faults(rate_limit=10)
    monkeypatch.setenv("STRIPE_CALLS_PER_SECOND", "8")  # a little below: arrival times jitter
    hook = StripeHook()
    assert isinstance(hook._http_client(), PacedRequestsClient)
    client = hook.get_conn()
    started = time.monotonic()
    for _ in range(15):
        available_currencies(client)
    assert time.monotonic() - started >= 14 / 8  # 15 calls 1/8 s apart: never faster than the pace
    stats = stripe_standin.stats()
    assert stats["stats"]["GET /v1/balance"] == 15 and "rate limited 429" not in stats["stats"]


def test_unpaced_calls_beyond_the_limit_get_stripes_429(stripe_standin, monkeypatch) -> None:
    import stripe

    from investment_jobs.stripe.hook import StripeHook

    stripe_standin.faults(rate_limit=5)
    monkeypatch.delenv("STRIPE_CALLS_PER_SECOND", raising=False)
    client = StripeHook().get_conn()
    with pytest.raises(stripe.RateLimitError) as refused:
        for _ in range(50):
            client.v1.balance.retrieve()
    assert refused.value.error.code == "rate_limit" and refused.value.http_status == 429
    stats = stripe_standin.stats()
    assert stats["stats"]["rate limited 429"] == 1 and stats["traffic"]["max_in_flight"] == 1
