"""Python's cyclic garbage collector held off while a job turns pages of engine JSON into rows.

A page of the bulk listing decodes into some 10,000 dicts and lists (an item and its agent data,
5,000 items a page). Each allocation counts towards the collector's thresholds, so a date's listing
sets off hundreds of young collections and, as the pages survive them, full ones; a full collection
walks every object of the worker process (Airflow's own, about a million), some 0.3 s each, at
100k accounts about a tenth of the date. The pages hold no reference cycles (JSON values, Decimals,
tuples): reference counting frees each page as the next one arrives, with or without the collector.
So the loop runs with the collector paused, and whatever cyclic garbage it left (an exception's
traceback, a library's) is collected once when the loop is over.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (reference counting still frees everything that is
    not in a cycle), then restore it as it was and collect the young generations once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect(1)  # the young generations: what the block left, without a walk of the whole heap
