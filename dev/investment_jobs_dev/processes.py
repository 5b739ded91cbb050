"""Child processes that never outlive whoever started them, and signals that unwind cleanly."""

from __future__ import annotations

import contextlib
import signal
import subprocess


def die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies, even by SIGKILL (a ``preexec_fn``, or for oneself)."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) both unwind through the caller's cleanup, even when the
    shell that started us left SIGINT ignored (as it does for background jobs). Only the first one:
    a second signal while the cleanup runs (``timeout`` and ``pkill`` both sending SIGTERM, a second
    Ctrl-C) would abort it and leave a cluster or a stack behind; ``kill -9`` still stops us."""
    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def run_forwarding_signals(argv: list[str]) -> int:
    """Run a child to its end: SIGTERM/SIGINT/SIGHUP to us reach it (then KeyboardInterrupt), and it
    dies with us (parent-death signal), so it never outlives the command that started it."""
    proc = subprocess.Popen(argv, preexec_fn=die_with_parent)
    forwarded: list[int] = []

    def forward(signum: int, frame: object) -> None:
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                status = proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if forwarded:
        raise KeyboardInterrupt
    return status
