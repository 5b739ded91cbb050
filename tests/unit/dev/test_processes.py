"""The dev tools' signal handling: the cleanup after Ctrl-C or ``kill`` runs to its end."""

from __future__ import annotations

import os
import signal

import pytest

from investment_jobs_dev.processes import stop_on_signals


@pytest.fixture
def restored_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(("first", "second"), [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM),
                                               (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_during_the_cleanup_does_not_abort_it(restored_handlers, first, second) -> None:
    """Regression: a SIGTERM from both ``timeout`` and ``pkill`` left a soak's PostgreSQL cluster running."""
    stop_on_signals()
    cleaned_up = False
    with pytest.raises(KeyboardInterrupt):
        try:
            os.kill(os.getpid(), first)
        finally:
            os.kill(os.getpid(), second)  # arrives while the cleanup runs
            cleaned_up = True
    assert cleaned_up
