"""The soak's fault schedule: drawn from a seed, so a run can be repeated fault for fault.

Every kind is planned at least once (the short profile is then a tour of them all); further faults
are drawn at ``rate`` per simulated day. A fault is planned for a day and a moment of it (seconds
after the day's runs started); what it hit and when is logged by :class:`FaultLog`.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

# On the deployment: processes and the database.
WORKER_SIGKILL = "worker_sigkill"  # a Celery worker (and the task it runs) killed with SIGKILL
SCHEDULER_RESTART = "scheduler_restart"  # the scheduler killed, then started again
POSTGRES_RESTART = "postgres_restart"  # fast shutdown of the database during the day's writes, then up
TERMINATE_SESSIONS = "terminate_sessions"  # pg_terminate_backend on every session of the jobs' role
# The ML engine.
ENGINE_BURSTS = "engine_bursts"  # a burst of 429s and 500s
ENGINE_SLOW = "engine_slow"  # every reply late
ENGINE_DOWN = "engine_down"  # the engine answers nothing for a while
ENGINE_MALFORMED = "engine_malformed"  # a few items of the day malformed
# Stripe.
STRIPE_ERROR_AFTER_CREATE = "stripe_error_after_create"  # the payout is made, the reply is a 500
STRIPE_TIMEOUT_AFTER_CREATE = "stripe_timeout_after_create"  # made, the reply later than the client waits
STRIPE_DROP_AFTER_CREATE = "stripe_drop_after_create"  # made, the connection dropped without a reply
STRIPE_RATE_LIMIT = "stripe_rate_limit"  # a burst of 429s before anything is made
STRIPE_FAILED_AFTER_PAID = "stripe_failed_after_paid"  # a paid payout turns failed (the bank returned it)

PROCESS_KINDS = (WORKER_SIGKILL, SCHEDULER_RESTART, POSTGRES_RESTART, TERMINATE_SESSIONS)
ENGINE_KINDS = (ENGINE_BURSTS, ENGINE_SLOW, ENGINE_DOWN, ENGINE_MALFORMED)
STRIPE_KINDS = (STRIPE_ERROR_AFTER_CREATE, STRIPE_TIMEOUT_AFTER_CREATE, STRIPE_DROP_AFTER_CREATE,
                STRIPE_RATE_LIMIT, STRIPE_FAILED_AFTER_PAID)
ALL_KINDS = PROCESS_KINDS + ENGINE_KINDS + STRIPE_KINDS
# Switches a stand-in holds for the whole day (set before the day's runs start, cleared after).
DAY_LONG = frozenset(ENGINE_KINDS + STRIPE_KINDS) - {ENGINE_DOWN, STRIPE_FAILED_AFTER_PAID}


@dataclass(frozen=True)
class PlannedFault:
    day: int  # index of the simulated day
    kind: str
    after_seconds: float  # float-ok: seconds into the day's runs
    pick: int  # a number the injector uses to choose its target (a worker, accounts, a payout)


def plan(seed: int, days: int, *, rate: float = 1.5,  # float-ok: faults per day
         without: frozenset[str] = frozenset()) -> list[PlannedFault]:
    """Every kind once on a random day, then about ``rate`` more per day; sorted by day and moment."""
    rng = random.Random(seed)
    kinds = [k for k in ALL_KINDS if k not in without]
    faults = [PlannedFault(rng.randrange(days), kind, round(rng.uniform(2, 25), 1), rng.randrange(1 << 30))
              for kind in kinds]
    for day in range(days):
        for _ in range(_poisson(rng, rate)):
            faults.append(PlannedFault(day, rng.choice(kinds), round(rng.uniform(2, 25), 1), rng.randrange(1 << 30)))
    return sorted(faults, key=lambda f: (f.day, f.after_seconds, f.kind))


def _poisson(rng: random.Random, mean: float) -> int:  # float-ok
    count, total = 0, rng.expovariate(1)
    while total < mean:
        count += 1
        total += rng.expovariate(1)
    return count


@dataclass
class FaultLog:
    """Each fault as it was injected: when, which kind, what it hit. Also written as JSON lines."""

    path: Path
    entries: list[dict] = field(default_factory=list)

    def record(self, fault: PlannedFault, target: str, day: str) -> None:
        at = time.strftime("%Y-%m-%dT%H:%M:%S")  # clock-ok: when the fault hit, for the log
        entry = {"at": at, "business_date": day, **asdict(fault), "target": target}
        self.entries.append(entry)
        with self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def by_kind(self) -> dict[str, int]:
        counts = Counter(e["kind"] for e in self.entries)
        return {k: counts[k] for k in ALL_KINDS if counts[k]}
