"""Run one DAG for business dates in this process (dag.test) and report what Airflow recorded.

``python -m bench.run_dag <dag_id> <warm-up date> <timed date> [more timed dates]``: the warm-up
date runs first, untimed, so that Airflow's one-time in-process start-up (its execution API app,
provider imports) is not counted against the job; then each timed date, after a CHECKPOINT (no
run pays for the dirty pages of the setup before it). With several timed dates the line is about
the median run, with every run's job time beside it (one run is at the machine's mercy). ``BENCH_BETWEEN_SQL``, when set, runs
against the investment database between the two. Used by bench.run in a fresh
subprocess per measurement, so that peak RSS is this process's alone. Prints one JSON line about
the timed run: job_seconds (first task start to last task end, from the task instances),
wall_seconds, per-task seconds, peak_rss_mb, state.

Peak RSS is the kernel's high-water mark of this process's own memory (``VmHWM``), not
``getrusage``'s ``ru_maxrss``: Linux carries a forked child's copy of its parent's RSS into
``ru_maxrss`` across ``exec``, so a child of the bench (which holds a seeded million-account book)
would report the parent's size, whatever it used itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path


def main() -> int:
    dag_id, warm_up, day = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
    from airflow.dag_processing.dagbag import DagBag

    dags = Path(__file__).resolve().parents[1] / "dags"
    dag = DagBag(dag_folder=str(dags / f"{dag_id}.py")).get_dag(dag_id)
    warm = dag.test(logical_date=datetime(warm_up.year, warm_up.month, warm_up.day, tzinfo=UTC))
    if str(warm.state) != "success":
        print(json.dumps({"state": f"warm-up run {warm_up} {warm.state}"}))
        return 1
    import psycopg

    between = os.environ.get("BENCH_BETWEEN_SQL")
    if between:  # e.g. approve the withdrawal requests that the timed run should pay
        with psycopg.connect(os.environ["AIRFLOW_CONN_INVESTMENT_DB"]) as conn:
            conn.execute(between)
    runs = []
    for timed in [day, *(date.fromisoformat(d) for d in sys.argv[4:])]:
        with psycopg.connect(os.environ["AIRFLOW_CONN_INVESTMENT_DB"], autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        runs.append(timed_run(dag, timed))
        if runs[-1]["state"] != "success":
            break
    chosen = sorted(runs, key=lambda r: r["job_seconds"])[len(runs) // 2] if runs[-1]["state"] == "success" \
        else runs[-1]
    print(json.dumps({
        **chosen, **({"job_seconds_each": [r["job_seconds"] for r in runs]} if len(runs) > 1 else {}),
        "peak_rss_mb": peak_rss_mb(),
    }))
    return 0 if chosen["state"] == "success" else 1


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB) since it started or since :func:`reset_peak_rss`."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: the best there is (it may include a parent's, see above)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kib) / 1024, 1)


def reset_peak_rss() -> None:
    """Start the high-water mark afresh from the current RSS (Linux: ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def timed_run(dag, day: date) -> dict:  # noqa: ANN001
    from airflow.utils.session import create_session

    started = time.perf_counter()
    dag_run = dag.test(logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC))
    wall = time.perf_counter() - started
    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        tasks = {ti.task_id: (ti.end_date - ti.start_date).total_seconds() for ti in tis
                 if ti.start_date and ti.end_date}
        job = (max(ti.end_date for ti in tis if ti.end_date)
               - min(ti.start_date for ti in tis if ti.start_date)).total_seconds()
    return {"state": str(dag_run.state), "date": day.isoformat(), "job_seconds": round(job, 3),
            "wall_seconds": round(wall, 3), "tasks": {k: round(v, 3) for k, v in tasks.items()}}


if __name__ == "__main__":
    raise SystemExit(main())
