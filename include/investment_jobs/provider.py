"""Provider metadata: registers the ``stripe`` connection type (the package's entry point
``apache_airflow_provider``), so the UI's connection form offers it with the fields it uses."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "investment-jobs",
        "name": "Investment jobs",
        "description": "The investment-accounts platform's scheduled money jobs and their Stripe hook.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "stripe",
                "hook-class-name": "investment_jobs.stripe.hook.StripeHook",
                "hook-name": "Stripe",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"password": "Secret key", "host": "API base URL (optional)"},
                    "placeholders": {"password": "sk_live_... or sk_test_...",
                                     "host": "empty for api.stripe.com, or http://127.0.0.1:12111"},
                },
            }
        ],
    }
