"""The audit trail of operator decisions (``investment.operator_decisions``, migration 0008).

Every decision a money job applies, every refusal of one, and every timeout is one row: who,
when, which run and task, the subject (period, request ids, account ids), the choice, the
reason, and the figures the page showed. ``decision_key`` makes writing it idempotent: a task
that is retried after it recorded a decision finds the row and writes nothing new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from investment_jobs.money import dumps_exact

if TYPE_CHECKING:
    import psycopg

KINDS = ("distribution_approval", "withdrawal_review", "withdrawal_operator_case", "distribution_drift")
OUTCOMES = ("applied", "refused", "timed_out", "not_applied")
REASON_LIMIT = 2000  # characters of a reason kept (it is shown in summaries and the UI)


@dataclass(frozen=True)
class Decision:
    key: str
    decided_by: str
    dag_id: str
    run_id: str
    task_id: str
    kind: str
    choice: str
    outcome: str
    reason: str | None = None
    period: str | None = None
    request_ids: list[str] = field(default_factory=list)
    account_ids: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown decision kind {self.kind!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown decision outcome {self.outcome!r}")


RECORD = """
    INSERT INTO investment.operator_decisions (decision_key, decided_by, dag_id, run_id, task_id, kind,
        period, request_ids, account_ids, choice, outcome, reason, figures)
    VALUES (%(key)s, %(by)s, %(dag)s, %(run)s, %(task)s, %(kind)s, %(period)s, %(requests)s::uuid[],
            %(accounts)s::uuid[], %(choice)s, %(outcome)s, %(reason)s, %(figures)s::jsonb)
    ON CONFLICT (decision_key) DO NOTHING
    RETURNING id
"""
FIND = "SELECT id FROM investment.operator_decisions WHERE decision_key = %s"


def record(conn: psycopg.Connection, decision: Decision) -> int:
    """Write the decision (once per key) inside the caller's transaction; returns its id."""
    row = conn.execute(RECORD, {
        "key": decision.key, "by": decision.decided_by[:200], "dag": decision.dag_id, "run": decision.run_id,
        "task": decision.task_id, "kind": decision.kind, "period": decision.period,
        "requests": decision.request_ids, "accounts": decision.account_ids, "choice": decision.choice[:200],
        "outcome": decision.outcome, "reason": None if decision.reason is None else decision.reason[:REASON_LIMIT],
        "figures": dumps_exact(decision.figures)}).fetchone()
    if row is not None:
        return int(row[0])
    return int(conn.execute(FIND, (decision.key,)).fetchone()[0])


def decisions_of_run(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """What the run's summary names: each decision it recorded, oldest first."""
    rows = conn.execute(
        """SELECT id, kind, choice, outcome, decided_by, decided_at, period, request_ids::text[], reason
           FROM investment.operator_decisions WHERE dag_id = %s AND run_id = %s ORDER BY id""",
        (dag_id, run_id)).fetchall()
    conn.rollback()
    return [{"decision_id": i, "kind": k, "choice": c, "outcome": o, "decided_by": by, "decided_at": at.isoformat(),
             **({"period": p} if p else {}), **({"request_ids": r} if r else {}), **({"reason": why} if why else {})}
            for i, k, c, o, by, at, p, r, why in rows]


def figures_of(conn: psycopg.Connection, decision_id: int) -> dict[str, Any]:
    """The figures a decision was made on, as recorded."""
    (figures,) = conn.execute("SELECT figures::text FROM investment.operator_decisions WHERE id = %s",
                              (decision_id,)).fetchone()
    return json.loads(figures)
