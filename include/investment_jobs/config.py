"""The one place that reads settings: env vars, schedules and connection ids (contracts.md).

Kept import-light: DAG files import it at parse time, so it must not touch a database, the
network, Airflow Variables or heavy libraries.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

INVESTMENT_DB_CONN_ID = "investment_db"
ML_ENGINE_CONN_ID = "ml_engine"
STRIPE_CONN_ID = "stripe_default"
STRIPE_WEBHOOK_CONN_ID = "stripe_webhook"

STAGING_SCHEMA = "investment_staging"


@dataclass(frozen=True)
class JobSchedule:
    dag_id: str
    default_cron: str
    env_var: str

    @property
    def cron(self) -> str:
        return env_str(self.env_var, self.default_cron)


SCHEDULES: dict[str, JobSchedule] = {
    s.dag_id: s
    for s in (
        JobSchedule("daily_performance", "30 0 * * *", "DAILY_PERFORMANCE_CRON"),
        JobSchedule("monthly_distribution", "0 1 1 * *", "MONTHLY_DISTRIBUTION_CRON"),
        JobSchedule("withdrawal_processing", "*/30 * * * *", "WITHDRAWAL_PROCESSING_CRON"),
        JobSchedule("ml_performance_sync", "15 * * * *", "ML_PERFORMANCE_SYNC_CRON"),
        JobSchedule("data_cleanup", "0 3 * * 0", "DATA_CLEANUP_CRON"),
        JobSchedule("stripe_reconciliation", "0 2 * * *", "STRIPE_RECONCILIATION_CRON"),
    )
}

MONEY_DAG_IDS = ("daily_performance", "monthly_distribution", "withdrawal_processing")


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:  # float-ok: durations, never money
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)  # float-ok: durations, never money
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def cron_timezone() -> str:
    return env_str("CRON_TIMEZONE", "UTC")


def cron_jobs_enabled() -> bool:
    return env_bool("ENABLE_CRON_JOBS", True)


def daily_reject_tolerance() -> int:
    return env_int("DAILY_REJECT_TOLERANCE", 0)


@dataclass(frozen=True)
class HttpRetryPolicy:
    """Retries of one HTTP call (429/5xx/connection errors), before Airflow's task retries."""

    attempts: int
    initial_wait: float  # float-ok: seconds
    max_wait: float  # float-ok: seconds
    timeout: float  # float-ok: seconds


def ml_engine_retry_policy() -> HttpRetryPolicy:
    return HttpRetryPolicy(
        attempts=env_int("ML_ENGINE_HTTP_ATTEMPTS", 5),
        initial_wait=env_float("ML_ENGINE_HTTP_INITIAL_WAIT", 1.0),
        max_wait=env_float("ML_ENGINE_HTTP_MAX_WAIT", 30.0),
        timeout=env_float("ML_ENGINE_HTTP_TIMEOUT", 30.0),
    )


def ml_engine_page_size() -> int:
    return env_int("ML_ENGINE_PAGE_SIZE", 5000)


def ml_engine_max_pages() -> int | None:
    """Pages a bulk listing may take before the run fails; unset: what the active accounts need."""
    value = env_int("ML_ENGINE_MAX_PAGES", 0)
    return value if value > 0 else None


def daily_shards() -> int:
    """How many mapped tasks pull and validate a date's listing, each an account range (SHARDS)."""
    from investment_jobs.ml_engine.shards import MAX_SHARDS

    value = env_int("SHARDS", 1)
    if not 1 <= value <= MAX_SHARDS:
        raise ValueError(f"SHARDS must be between 1 and {MAX_SHARDS}, got {value}")
    return value


@dataclass(frozen=True)
class TaskRetryPolicy:
    retries: int
    retry_delay: timedelta
    max_retry_delay: timedelta


def task_execution_timeout() -> timedelta:
    """How long one try of any task may run before Airflow stops it (``TASK_EXECUTION_TIMEOUT_MINUTES``,
    default 60): a stuck call fails the try, and the retry or the operator takes it from there."""
    minutes = env_float("TASK_EXECUTION_TIMEOUT_MINUTES", 60.0)
    if minutes <= 0:
        raise ValueError("TASK_EXECUTION_TIMEOUT_MINUTES must be positive")
    return timedelta(minutes=minutes)


def task_retry_policy() -> TaskRetryPolicy:
    """Airflow task retries with exponential backoff; env-tunable so tests need not wait."""
    return TaskRetryPolicy(
        retries=env_int("TASK_RETRIES", 3),
        retry_delay=timedelta(seconds=env_float("TASK_RETRY_DELAY_SECONDS", 60.0)),
        max_retry_delay=timedelta(seconds=env_float("TASK_MAX_RETRY_DELAY_SECONDS", 900.0)),
    )


def reconcile_days() -> int:
    return env_int("RECONCILE_DAYS", 3)


def sync_reject_tolerance() -> int:
    return env_int("SYNC_REJECT_TOLERANCE", 0)


def transaction_retention_days() -> int:
    return env_int("TRANSACTION_RETENTION_DAYS", 90)


def closed_account_archive_days() -> int:
    return env_int("CLOSED_ACCOUNT_ARCHIVE_DAYS", 365)


def daily_performance_retention_months() -> int:
    """Whole months of daily_performance kept before B's month; older ones are archived by
    data_cleanup (detached into schema investment_archive). 0, the default: every month is kept."""
    months = env_int("DAILY_PERFORMANCE_RETENTION_MONTHS", 0)
    if months < 0:
        raise ValueError(f"DAILY_PERFORMANCE_RETENTION_MONTHS must be 0 (keep all) or more, got {months}")
    return months


def cleanup_batch_size() -> int:
    return env_int("CLEANUP_BATCH_SIZE", 5000)


@dataclass(frozen=True)
class StripeHttpPolicy:
    """stripe-python's own retries (same idempotency key) and how long one call may take."""

    timeout: float  # float-ok: seconds
    network_retries: int
    rate_limit_attempts: int  # 429s: stripe-python does not retry them, we do (nothing was stored)
    # HTTP requests per second one task sends at most (0: unpaced): the account's limit divided by
    # the stripe_api pool's slots keeps the whole deployment within Stripe's rate limit.
    calls_per_second: float = 0  # float-ok: a rate, not money


def stripe_http_policy() -> StripeHttpPolicy:
    return StripeHttpPolicy(
        timeout=env_float("STRIPE_HTTP_TIMEOUT", 30.0),
        network_retries=env_int("STRIPE_NETWORK_RETRIES", 2),
        rate_limit_attempts=env_int("STRIPE_RATE_LIMIT_ATTEMPTS", 3),
        calls_per_second=max(env_float("STRIPE_CALLS_PER_SECOND", 0.0), 0.0),
    )


def stripe_webhook_tolerance_seconds() -> int:
    """How old a webhook's signed timestamp may be (Stripe's libraries default to 300 s)."""
    return max(env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300), 1)


def stripe_reconciliation_tolerance() -> int:
    """Differences one business date may show before its reconciliation run fails (it warns below)."""
    return max(env_int("STRIPE_RECONCILIATION_TOLERANCE", 0), 0)


def withdrawal_batch_size() -> int:
    """Approved requests claimed per run (oldest first); the rest wait for the next run."""
    return env_int("WITHDRAWAL_BATCH_SIZE", 2000)


def payout_watch_days() -> int:
    """How long a completed withdrawal's payout is still read back: a paid payout can fail later."""
    return env_int("PAYOUT_WATCH_DAYS", 10)


def idempotency_key_window_hours() -> int:
    """Stripe keeps an idempotency key for at least 24 h; past this age we look a payout up first."""
    return env_int("STRIPE_IDEMPOTENCY_WINDOW_HOURS", 23)


def notification_batch_size() -> int:
    return env_int("WITHDRAWAL_NOTIFICATION_BATCH_SIZE", 1000)


def daily_deadline() -> str:
    """When a scheduled daily_performance run for D must have succeeded: this time (HH:MM) on D+1,
    in CRON_TIMEZONE (``DAILY_DEADLINE``, default 06:00)."""
    value = env_str("DAILY_DEADLINE", "06:00")
    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        raise ValueError(f"DAILY_DEADLINE must be a time of day HH:MM (24 h), got {value!r}")
    return value


def deadline_alerts_enabled() -> bool:
    """Whether the money DAGs carry their Deadline Alerts (``DEADLINE_ALERTS``, default true).

    Off for runs without a scheduler: Airflow 3.3.2's ``dag.test()`` (``airflow dags test``, so
    ``make job``) fails at the end of a successful run of a DAG with deadlines (it looks the alerts
    up by their serialized form instead of their ids), and there is no scheduler to watch them.
    """
    return env_bool("DEADLINE_ALERTS", True)


def monthly_deadline() -> timedelta:
    """How long after its cron's time on the 1st of the next month a period's distribution is due
    (``MONTHLY_DEADLINE``: hours, ``24`` or ``24h``; default 24)."""
    value = env_str("MONTHLY_DEADLINE", "24").strip().lower().removesuffix("h").strip()
    if not re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,2})?", value):
        raise ValueError(f"MONTHLY_DEADLINE must be a number of hours (e.g. 24 or 36h), got {value!r}")
    return timedelta(minutes=round(float(value) * 60))  # float-ok: a duration, to the minute


def health_lookback_days() -> int:
    """How many ended business dates /health/jobs and a missed deadline list missing ones from."""
    return env_int("HEALTH_LOOKBACK_DAYS", 35)


def health_grace() -> timedelta:
    """How far past one schedule interval a money job may lag before /health/jobs says late."""
    return timedelta(minutes=env_int("HEALTH_GRACE_MINUTES", 120))


# Ids listed in a summary line (the tables hold all of them): one limit for every job.
SUMMARY_ID_LIMIT = 100


def alert_webhook_url() -> str:
    """Slack-compatible incoming webhook for failure alerts; empty: alerts are log lines only."""
    return env_str("ALERT_WEBHOOK_URL", "")


# --- operator decisions (issue 15) -------------------------------------------------------------
APPROVAL_MODES = ("required", "auto")


def distribution_approval() -> str:
    """Who approves a month before it is credited (``DISTRIBUTION_APPROVAL``): ``required`` (a
    person in the UI, the default), ``auto`` (nobody waits; recorded as such), or ``cli:<user>``
    (``make job``: the person who ran it)."""
    value = env_str("DISTRIBUTION_APPROVAL", "required")
    if value in APPROVAL_MODES or (value.startswith("cli:") and len(value) > 4):
        return value
    raise ValueError(f"DISTRIBUTION_APPROVAL must be required, auto or cli:<user>, got {value!r}")


def _duration(name: str, default: str) -> timedelta:
    """``30m``, ``24h``, ``2d`` (or a bare number of hours)."""
    value = env_str(name, default).strip().lower()
    match = re.fullmatch(r"([0-9]{1,5})\s*([smhd]?)", value)
    if not match:
        raise ValueError(f"{name} must be a duration like 30m, 24h or 2d, got {value!r}")
    number, unit = int(match.group(1)), match.group(2) or "h"
    unit_name = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]
    return timedelta(**{unit_name: number})


def distribution_approval_timeout() -> timedelta:
    """How long a month waits for its approval before the run fails, writing nothing
    (``DISTRIBUTION_APPROVAL_TIMEOUT``, default 48h)."""
    return _duration("DISTRIBUTION_APPROVAL_TIMEOUT", "48h")


def distribution_review_change_alert() -> Decimal:
    """A currency's (or product's) gross that changed by more than this percent against the previous
    distributed month is flagged on the review page (``DISTRIBUTION_REVIEW_CHANGE_ALERT``, 50)."""
    from investment_jobs.money import NotADecimal, parse_decimal

    raw = env_str("DISTRIBUTION_REVIEW_CHANGE_ALERT", "50")
    try:
        value = parse_decimal(raw)
    except NotADecimal as exc:
        raise ValueError(f"DISTRIBUTION_REVIEW_CHANGE_ALERT must be a percent, got {raw!r}") from exc
    if value < 0:
        raise ValueError("DISTRIBUTION_REVIEW_CHANGE_ALERT must not be negative")
    return value


def distribution_review_fee_alert() -> CurrencyAmounts:
    """A single fee above this amount is flagged on the review page (``DISTRIBUTION_REVIEW_FEE_ALERT``:
    one amount in every currency's major units, or ``usd=5000,jpy=700000``; unset: no flag)."""
    return currency_amounts("DISTRIBUTION_REVIEW_FEE_ALERT")


def withdrawal_review_threshold() -> CurrencyAmounts:
    """Requests at or above this amount wait for a person before they are paid
    (``WITHDRAWAL_REVIEW_THRESHOLD``, per currency in major units, ``usd=10000,eur=9000``, or one
    amount for all). Unset by default: nothing waits for review."""
    return currency_amounts("WITHDRAWAL_REVIEW_THRESHOLD")


def withdrawal_review_timeout() -> timedelta:
    """How long one run waits for the review of its held requests (``WITHDRAWAL_REVIEW_TIMEOUT``,
    default 20m: shorter than the 30-minute schedule, so the next run asks again)."""
    return _duration("WITHDRAWAL_REVIEW_TIMEOUT", "20m")


def operator_case_timeout() -> timedelta:
    """How long one run waits for the decisions on requests that need an operator
    (``OPERATOR_CASE_TIMEOUT``, default 20m)."""
    return _duration("OPERATOR_CASE_TIMEOUT", "20m")


def drift_decision_timeout() -> timedelta:
    """How long a month's run waits for the decision on its drifted accounts (``DRIFT_DECISION_TIMEOUT``,
    default 48h)."""
    return _duration("DRIFT_DECISION_TIMEOUT", "48h")


def money_approvers() -> frozenset[str]:
    """The Airflow user names whose decisions on money count (``MONEY_APPROVERS``, comma-separated;
    unset: any user who may answer in the UI)."""
    return frozenset(n.strip() for n in os.environ.get("MONEY_APPROVERS", "").split(",") if n.strip())


@dataclass(frozen=True)
class CurrencyAmounts:
    """Amounts in major units per currency (``default`` for the ones not listed); empty: not set."""

    per_currency: dict[str, Decimal]
    default: Decimal | None = None

    @property
    def configured(self) -> bool:
        return bool(self.per_currency) or self.default is not None

    def get(self, currency: str) -> Decimal | None:
        return self.per_currency.get(currency.lower(), self.default)


def currency_amounts(name: str) -> CurrencyAmounts:
    from investment_jobs.money import NotADecimal, parse_decimal

    raw = os.environ.get(name, "").strip()
    if not raw:
        return CurrencyAmounts({})
    per_currency: dict[str, Decimal] = {}
    default: Decimal | None = None
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        currency, _, amount = part.rpartition("=")
        try:
            value = parse_decimal(amount.strip())
        except NotADecimal as exc:
            raise ValueError(f"{name}: {part!r} is not an amount ({exc})") from None
        if value < 0:
            raise ValueError(f"{name}: {part!r} must not be negative")
        if not currency:
            default = value
        elif re.fullmatch(r"[a-zA-Z]{3}", currency.strip()):
            per_currency[currency.strip().lower()] = value
        else:
            raise ValueError(f"{name}: {currency!r} is not a currency code (usd=10000,eur=9000)")
    return CurrencyAmounts(per_currency, default)


def operator_decisions() -> str:
    """``OPERATOR_DECISIONS``: ``ask`` (default: withdrawals held for review and requests that need
    an operator are asked about in the UI) or ``skip`` (nothing is asked: they stay as they are for
    a later run; for ``make job`` and ``dag.test()``, which no person watches)."""
    value = env_str("OPERATOR_DECISIONS", "ask")
    if value not in ("ask", "skip"):
        raise ValueError(f"OPERATOR_DECISIONS must be ask or skip, got {value!r}")
    return value
