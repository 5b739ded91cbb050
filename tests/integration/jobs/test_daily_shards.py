"""SHARDS (issue 19): D's listing pulled by N mapped tasks, one account range each, stores exactly
the rows, rejects and accounts of one pull: with an engine that serves the ranges and with one
that ignores them (each shard then keeps only its own). A shard pulled again (its retry) doubles
nothing and loses nothing of the other shards."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.jobs.test_daily_performance import ACCOUNTS, DAY, TABLE, reset_book, succeeded
from tests.support.airflow_runs import run_dag, xcom
from tests.support.book import Book

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

REJECTS = "SELECT account_id, reason, item::text FROM investment.daily_performance_rejects ORDER BY 1, 2, 3"


def every_kind_of_reject(book: Book) -> dict:
    """Bad items in every range: malformed ones, unknown and duplicated accounts, an id that is not
    a UUID, an upper-case UUID far in the id space, an item that is not an object."""
    ids = sorted(a.account_id for a in book.accounts if a.status == "active")
    far = str(uuid.UUID(int=(1 << 128) - 5)).upper()
    return {
        "malformed": {ids[0]: "non_numeric", ids[len(ids) // 2]: "missing_field", ids[-1]: "nan"},
        "unknown_accounts": 2, "duplicate_accounts": [ids[len(ids) // 3]],
        "raw_items": [json.dumps({"account_id": "not-a-uuid", "date": DAY.isoformat()}),
                      json.dumps({"account_id": far, "date": DAY.isoformat()}), '"just a string"'],
    }


def stored(book: Book) -> tuple:
    return book.query(TABLE), book.query(ACCOUNTS), book.query(REJECTS)


@pytest.mark.parametrize("ranges", ["served", "ignored"])
def test_three_shards_store_exactly_what_one_pull_stores(book: Book, engine, monkeypatch, ranges: str) -> None:  # noqa: ANN001
    faults = every_kind_of_reject(book)
    monkeypatch.setenv("DAILY_REJECT_TOLERANCE", "100")
    engine.faults(**faults)
    one = run_dag("daily_performance", DAY)
    succeeded(one)
    by_one, summary_one = stored(book), xcom(one, "summarise")  # (the next run of D replaces this one)
    assert len(by_one[2]) >= 9  # every kind above became a reject

    reset_book(book)
    engine.faults(**faults, ignore_account_range=ranges == "ignored")
    monkeypatch.setenv("SHARDS", "3")
    three = run_dag("daily_performance", DAY)
    succeeded(three)
    assert stored(book) == by_one
    summary_three = xcom(three, "summarise")
    assert len([t for t in three.get_task_instances() if t.task_id == "pull_ml_performance"]) == 3
    for key in ("received", "processed", "rejected_count", "missing_count", "totals_by_currency"):
        assert summary_three[key] == summary_one[key], key
    # each shard kept its own range; an engine that ignores the ranges sent every item to all three
    outside = 0 if ranges == "served" else 2 * summary_one["received"]
    assert summary_three["items_outside_their_shard"] == outside
    listings = engine.stats()["requests"]["/api/v1/performance/daily:200"]
    assert listings >= 2 * 3  # one run's pages, then three shards' (each at least a page)


def test_a_shard_pulled_again_replaces_only_its_own_items(book: Book, engine) -> None:  # noqa: ANN001
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs import daily
    from investment_jobs.ml_engine.client import MLEngineClient
    from investment_jobs.ml_engine.shards import account_ranges

    engine.faults(**every_kind_of_reject(book))
    run = daily.reference_for(DAY, "shard-retry")
    first, second = account_ranges(2)
    with connect() as conn, MLEngineClient() as client:
        daily.snapshot_active_accounts(conn, run, "UTC", shards=2)
        counts = [daily.pull_performance(conn, client, run, 4, None, shard) for shard in (first, second)]
        tables = daily.staging(run)

        def staged() -> tuple[int, int]:
            return (tables.count(conn, "items"), tables.count(conn, "rejects"))

        before = staged()
        again = daily.pull_performance(conn, client, run, 4, None, second)  # the retry of shard 2
        assert again == counts[1]
        assert staged() == before == (sum(c["valid"] for c in counts), sum(c["rejected"] for c in counts))
        assert all(c["valid"] > 0 and c["other_shards_items"] == 0 for c in counts)
        daily.drop_staging(conn, run)
