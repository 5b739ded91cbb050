"""The account ranges SHARDS splits a listing by: every id in exactly one, nothing lost at the seams."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from investment_jobs.ml_engine.shards import MAX_SHARDS, AccountRange, account_ranges


@given(st.integers(min_value=0, max_value=(1 << 128) - 1), st.integers(min_value=1, max_value=MAX_SHARDS))
def test_every_uuid_is_in_exactly_one_range(value: int, count: int) -> None:
    text = str(uuid.UUID(int=value))
    holders = [r.index for r in account_ranges(count) if r.holds(text)]
    assert len(holders) == 1
    # and it is the range its value falls in: the last whose first id is not above it
    assert holders[0] == max(k for k in range(count) if k * (1 << 128) // count <= value)


@pytest.mark.parametrize("count", [2, 3, 7, MAX_SHARDS])
def test_the_ranges_meet_without_a_gap(count: int) -> None:
    ranges = account_ranges(count)
    assert ranges[0].lower is None and ranges[-1].upper is None
    for left, right in zip(ranges, ranges[1:], strict=False):
        assert left.upper == right.lower
        seam = uuid.UUID(right.lower)
        just_before = str(uuid.UUID(int=seam.int - 1))
        assert left.holds(just_before) and not right.holds(just_before)
        assert right.holds(str(seam)) and not left.holds(str(seam))


@pytest.mark.parametrize("account_id", ["", "not-a-uuid", "42", "0000000A-0000-0000-0000-000000000000"])
def test_what_is_not_a_canonical_uuid_belongs_to_the_first_range(account_id: str) -> None:
    assert [r.index for r in account_ranges(4) if r.holds(account_id)] == [0]


@pytest.mark.parametrize(("shard", "query"), [
    (AccountRange(), {}),
    (AccountRange(0, 2), {"account_to": "80000000-0000-0000-0000-000000000000"}),
    (AccountRange(1, 2), {"account_from": "80000000-0000-0000-0000-000000000000"}),
    (AccountRange(1, 4), {"account_from": "40000000-0000-0000-0000-000000000000",
                          "account_to": "80000000-0000-0000-0000-000000000000"}),
])
def test_the_listing_parameters_name_the_range(shard: AccountRange, query: dict) -> None:
    assert shard.query() == query


def test_one_shard_is_the_whole_listing_as_the_contract_has_it() -> None:
    whole = AccountRange()
    assert whole.query() == {} and whole.label == "every account"
    assert whole.holds("anything at all") and whole.holds(str(uuid.uuid4()))


@pytest.mark.parametrize(("index", "count"), [(0, 0), (2, 2), (-1, 3), (0, MAX_SHARDS + 1)])
def test_a_range_that_cannot_exist_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        AccountRange(index, count)
