"""The soak's fault schedule and its figures table: seeded, complete, kept per (profile, seed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from investment_jobs_dev.soak import faults as F  # noqa: N812
from investment_jobs_dev.soak.run import BEGIN, END, Figures, write_report


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_kind_is_planned_at_least_once_within_the_days(seed: int) -> None:
    planned = F.plan(seed, days=3, rate=0)
    assert Counter(f.kind for f in planned) == Counter(F.ALL_KINDS)
    assert all(0 <= f.day < 3 and 2 <= f.after_seconds <= 25 for f in planned)
    assert planned == sorted(planned, key=lambda f: (f.day, f.after_seconds, f.kind))


def test_a_seed_repeats_its_schedule_and_another_seed_does_not() -> None:
    assert F.plan(5, days=60) == F.plan(5, days=60)
    assert F.plan(5, days=60) != F.plan(6, days=60)


def test_the_rate_adds_faults_beyond_one_of_each_kind() -> None:
    assert len(F.plan(1, days=60, rate=1.5)) > len(F.ALL_KINDS) + 45


def test_a_kind_left_out_is_never_planned() -> None:
    planned = F.plan(1, days=10, rate=2, without=frozenset({F.WORKER_SIGKILL}))
    assert F.WORKER_SIGKILL not in {f.kind for f in planned}


def test_the_fault_log_counts_by_kind_and_writes_json_lines(tmp_path: Path) -> None:
    log = F.FaultLog(tmp_path / "faults.jsonl")
    for fault in F.plan(1, days=1, rate=0)[:3]:
        log.record(fault, "a target", "2026-01-01")
    lines = (tmp_path / "faults.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"target": "a target"' in lines[0] and '"at": ' in lines[0]
    assert sum(log.by_kind().values()) == 3


def figures(profile: str, seed: int, violations: list[str]) -> Figures:
    return Figures(profile, seed, "CeleryExecutor", 3, "2026-01-01", "2026-01-03",
                   runs={"daily_performance": {"success": 3}}, faults_by_kind={"engine_down": 1}, faults_injected=1,
                   violations=violations, rounds_to_converge=2, wall_seconds=120)


def test_the_report_keeps_one_row_per_profile_and_seed_and_the_text_around_it(tmp_path: Path) -> None:
    report = tmp_path / "RELIABILITY.md"
    report.write_text(f"# Reliability\n\nintro\n\n{BEGIN}\n{END}\n\nafter\n")
    write_report(report, figures("long", 2, []))
    write_report(report, figures("long", 1, ["x"]))
    write_report(report, figures("long", 2, []))  # rerun of seed 2: its row replaced
    write_report(report, figures("short", 3, []))
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| long") or line.startswith("| short")]
    assert [r.split("|")[1:3] for r in rows] == [[" long ", " 1 "], [" long ", " 2 "], [" short ", " 3 "]]
    assert "| **1** |" in rows[0] and "| **0** |" in rows[1]
    assert text.startswith("# Reliability\n\nintro\n") and text.endswith("\nafter\n")
