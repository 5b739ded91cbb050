"""The soak's short profile (issue 18): a few simulated days on a real deployment (its own
PostgreSQL cluster, the stand-ins, Airflow with Celery on Redis, or LocalExecutor without it), with
every fault kind injected at least once, then the invariants against the stand-ins' own records.
The long one is ``make soak`` (RELIABILITY.md has its figures)."""

from __future__ import annotations

import json

import pytest

from investment_jobs_dev.soak import faults as F  # noqa: N812
from investment_jobs_dev.soak.load import Backlog, paced_env
from investment_jobs_dev.soak.run import PROFILES, Soak

pytestmark = pytest.mark.integration

SEED = 3
BACKLOG, RATE_LIMIT = 200, 25  # the load in small (make soak-load is the 10,000 one): the same checks under 25/s


def test_a_few_days_under_every_fault_kind_end_with_nothing_lost(tmp_path) -> None:  # noqa: ANN001
    soak = Soak(PROFILES["short"], SEED, tmp_path / "soak")
    soak.extra_env = paced_env(RATE_LIMIT)
    try:
        soak.start()
        figures = soak.run()
        load = Backlog(soak, BACKLOG, RATE_LIMIT, burst=5, burst_every=5).run()
    finally:
        soak.stop()
    print(json.dumps({k: v for k, v in vars(figures).items() if k != "failed_runs"}, default=str, indent=1))
    kinds = set(F.ALL_KINDS) - ({F.WORKER_SIGKILL} if figures.executor == "LocalExecutor" else set())
    assert set(figures.faults_by_kind) == kinds, figures.faults_by_kind
    assert figures.violations == []
    assert figures.secret_hits == {"stripe key": 0, "webhook secret": 0, "database password": 0}
    assert figures.rounds_to_converge >= 2
    assert figures.daily_rows > 0 and figures.payouts > 0
    assert figures.runs["daily_performance"].get("success", 0) >= PROFILES["short"].days
    # The backlog after the days: every request paid by exactly one payout, none over the limit.
    print(json.dumps(vars(load), default=str, indent=1))
    assert load.violations == []
    assert load.completed == load.stripe_payouts == BACKLOG
    assert load.max_payouts_in_a_second <= RATE_LIMIT and load.injected_429 > 0
