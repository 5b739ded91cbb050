"""The collector pause around the jobs' page loops: restored as it was, and what the block left in
cycles is still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from investment_jobs.bulk import cyclic_gc_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_collector_is_paused_in_the_block_and_restored_after(enabled_before: bool) -> None:
    (gc.enable if enabled_before else gc.disable)()
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()


def test_an_error_in_the_block_still_restores_the_collector() -> None:
    gc.enable()
    with pytest.raises(ValueError, match="a bad page"), cyclic_gc_paused():
        raise ValueError("a bad page")
    assert gc.isenabled()


def test_a_cycle_left_by_the_block_is_collected_when_it_ends() -> None:
    gc.enable()
    with cyclic_gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a  # reference counting alone never frees these two
        left = weakref.ref(a)
        del a, b
        assert left() is not None  # the collector is paused: the cycle is still there
    assert left() is None
