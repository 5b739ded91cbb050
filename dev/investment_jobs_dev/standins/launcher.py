"""Start a stand-in server in its own process, wait until it answers, stop it: the one way every
tool here does it (make job and the demo, the tests, the benchmark)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from investment_jobs_dev.processes import die_with_parent

ML_ENGINE = "investment_jobs_dev.standins.ml_engine"
STRIPE = "investment_jobs_dev.standins.stripe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, timeout: float = 1) -> bool:  # float-ok: seconds
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except OSError:
        return False


class StandIn:
    """One stand-in on 127.0.0.1:``port``. Secrets go in ``env``, never in ``args`` (``ps`` shows those)."""

    def __init__(self, module: str, port: int, log: Path, *, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.module, self.port, self.log, self.args, self.env = module, port, log, list(args), env
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> StandIn:  # float-ok: seconds
        """Start it (it dies with this process) and wait until ``/_admin/health`` answers."""
        import os

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, "--port", str(self.port), *self.args],
                                     env={**os.environ, **(self.env or {})}, stdout=self.log.open("a"),
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while not answers(f"{self.url}/_admin/health"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stand-in {self.module} did not start on port {self.port}; "
                                   f"see {self.log}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
