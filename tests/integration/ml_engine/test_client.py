"""The ML engine client against the stand-in over real HTTP: paging, retries, permanent errors."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from investment_jobs.config import HttpRetryPolicy
from investment_jobs.ml_engine.client import MLEngineClient, PermanentEngineError, TransientEngineError
from investment_jobs.ml_engine.validation import EngineItem
from investment_jobs_dev.standins.ml_engine_data import demo_account_id

pytestmark = pytest.mark.integration
DAY = date(2026, 1, 5)
FAST = HttpRetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, timeout=2)


@pytest.fixture
def five_accounts(engine) -> list[str]:  # noqa: ANN001
    ids = [demo_account_id(3, i) for i in range(5)]
    engine.register([{"account_id": a, "opened_on": "2025-01-01", "closed_on": None,
                      "initial_balance": "1000.00"} for a in ids])
    return ids


def test_pages_until_next_cursor_is_null_with_decimal_amounts(five_accounts: list[str]) -> None:
    with MLEngineClient(policy=FAST) as client:
        pages = list(client.iter_daily_performance(DAY, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    items = [i for p in pages for i in p]
    assert all(type(i) is EngineItem for i in items)  # the usual page: typed, no dict per item
    assert sorted(i.account_id for i in items) == sorted(five_accounts)
    assert all(isinstance(Decimal(i.closing_balance), Decimal) for i in items)


def test_a_page_with_an_item_out_of_the_ordinary_comes_as_plain_json(engine, five_accounts: list[str]) -> None:  # noqa: ANN001
    engine.faults(malformed={five_accounts[0]: "missing_field"})
    with MLEngineClient(policy=FAST) as client:
        (page,) = list(client.iter_daily_performance(DAY, limit=10))
    assert all(type(i) is dict for i in page)
    odd = next(i for i in page if i["account_id"] == five_accounts[0])
    assert "closing_balance" not in odd
    assert all(isinstance(i["opening_balance"], str) for i in page)


def test_transient_errors_are_retried_with_the_same_request(engine, five_accounts: list[str]) -> None:  # noqa: ANN001
    engine.faults(fail_next=[429, 502])
    with MLEngineClient(policy=FAST) as client:
        pages = list(client.iter_daily_performance(DAY, limit=10))
    assert len(pages[0]) == 5
    assert engine.stats()["requests"]["/api/v1/performance/daily:200"] == 1


def test_too_many_transient_errors_raise_transient(engine, five_accounts: list[str]) -> None:  # noqa: ANN001
    engine.faults(down=True)
    with MLEngineClient(policy=FAST) as client, pytest.raises(TransientEngineError, match="HTTP 503"):
        list(client.iter_daily_performance(DAY, limit=10))
    assert engine.stats()["requests"]["/api/v1/performance/daily:503"] == FAST.attempts


def test_unreachable_engine_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ML_ENGINE", "http://127.0.0.1:9")  # nothing listens on 9
    with MLEngineClient(policy=FAST) as client, pytest.raises(TransientEngineError, match="ConnectionError"):
        list(client.iter_daily_performance(DAY, limit=10))


def test_other_4xx_are_permanent_and_not_retried(engine, five_accounts: list[str]) -> None:  # noqa: ANN001
    with MLEngineClient(policy=FAST) as client, pytest.raises(PermanentEngineError) as err:
        list(client.iter_daily_performance(DAY, limit=60_000))  # the engine takes at most 50,000
    assert err.value.status == 400
    assert sum(v for k, v in engine.stats()["requests"].items() if ":400" in k) == 1


def test_the_stand_ins_per_account_history_chains_its_days(engine, five_accounts: list[str]) -> None:  # noqa: ANN001
    """The stand-in's per-account route (the benchmark's baseline calls it, as the original did)."""
    import json
    import urllib.request

    url = (f"{engine.url}/api/v1/accounts/{five_accounts[0]}/performance"
           "?start_date=2026-01-01&end_date=2026-01-03")
    with urllib.request.urlopen(url, timeout=30) as resp:
        items = json.loads(resp.read())
    assert [i["date"] for i in items] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert items[1]["opening_balance"] == items[0]["closing_balance"]
