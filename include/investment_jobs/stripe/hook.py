"""``StripeHook``: a stripe-python ``StripeClient`` from the Airflow connection ``stripe_default``.

The secret key is the connection's password, an optional API base URL (the local stand-in, a
proxy) its host. The key is handed to the client and nowhere else: Airflow masks connection
passwords in task logs, and the errors this module raises name the connection, never the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

from investment_jobs.config import STRIPE_CONN_ID, stripe_http_policy

if TYPE_CHECKING:
    from stripe import StripeClient


class StripeConnectionError(Exception):
    """The connection cannot make a client (no key, a bad base URL): a setup problem."""


class StripeHook(BaseHook):
    conn_name_attr = "stripe_conn_id"
    default_conn_name = STRIPE_CONN_ID
    conn_type = "stripe"
    hook_name = "Stripe"

    def __init__(self, stripe_conn_id: str = STRIPE_CONN_ID, timeout: float | None = None,  # float-ok: seconds
                 max_network_retries: int | None = None) -> None:
        super().__init__()
        self.stripe_conn_id = stripe_conn_id
        policy = stripe_http_policy()
        self.timeout = policy.timeout if timeout is None else timeout
        self.max_network_retries = policy.network_retries if max_network_retries is None else max_network_retries
        self.calls_per_second = policy.calls_per_second
        self._client: StripeClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login", "port", "extra"],
            "relabeling": {"password": "Secret key", "host": "API base URL (optional)"},
            "placeholders": {"password": "sk_live_... or sk_test_...",
                             "host": "https://api.stripe.com (leave empty), or http://127.0.0.1:12111"},
        }

    def api_base(self) -> str | None:
        """The base URL from the connection's host, with a scheme; None means Stripe itself."""
        conn = self.get_connection(self.stripe_conn_id)
        host = (conn.host or "").strip().rstrip("/")
        if not host:
            return None
        if "://" not in host:
            host = f"https://{host}"
        if conn.port and host.count(":") < 2:
            host = f"{host}:{conn.port}"
        return host

    def get_conn(self) -> StripeClient:
        if self._client is None:
            from stripe import StripeClient

            conn = self.get_connection(self.stripe_conn_id)
            if not conn.password:
                raise StripeConnectionError(
                    f"connection {self.stripe_conn_id!r} has no secret key (set its password)")
            base = self.api_base()
            from investment_jobs.stripe.calls import STRIPE_API_VERSION

            self._client = StripeClient(
                conn.password,
                base_addresses={"api": base} if base else None,
                max_network_retries=self.max_network_retries,
                http_client=self._http_client(),
                stripe_version=STRIPE_API_VERSION,
            )
        return self._client

    def _http_client(self) -> Any:
        """stripe-python's requests client, paced when ``STRIPE_CALLS_PER_SECOND`` is set."""
        from stripe import RequestsClient

        if not self.calls_per_second:
            return RequestsClient(timeout=self.timeout)
        from investment_jobs.stripe.pacing import PacedRequestsClient, Pacer

        return PacedRequestsClient(Pacer(self.calls_per_second), timeout=self.timeout)

    def test_connection(self) -> tuple[bool, str]:
        """Reads the balance: proves the address answers and the key is accepted."""
        from investment_jobs.stripe.calls import StripeCallError, available_currencies

        try:
            currencies = available_currencies(self.get_conn())
        except StripeConnectionError as exc:
            return False, str(exc)
        except StripeCallError as exc:
            return False, f"{exc.error_type}: {exc.verdict.message}"
        return True, f"Connected; available balance in {', '.join(currencies) or 'no currency yet'}"
