"""`make job` as an operator runs it: the date it processes in any zone, what it refuses to run, its
exit statuses, a killed make, and two at once (defects 1 and 12 of issue 12).

Each test runs the real `make job` (or the command behind it) in a subprocess against the tests'
PostgreSQL and stand-ins, with its own Airflow home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import psutil
import pytest

from tests.support.paths import PYTHON, ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def job_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("job-airflow")


@pytest.fixture
def job_env(book, engine, stripe_standin, job_home: Path) -> dict[str, str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k != "AIRFLOW_HOME"}
    env.update({"AIRFLOW_HOME": str(job_home), "TASK_RETRIES": "0", "CRON_TIMEZONE": "UTC"})
    return env


def make_job(env: dict[str, str], dag: str, day: str, **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "job", f"DAG={dag}", f"DATE={day}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **popen)


def json_event(output: str, event: str) -> dict:
    for line in output.splitlines():
        if f'"event": "{event}"' in line:
            return json.loads(line[line.index('{"'):line.rindex("}") + 1])
    raise AssertionError(f"no {event} line in:\n{output[-3000:]}")


def test_date_d_is_business_date_d_west_of_utc(book, job_env) -> None:  # noqa: ANN001
    """Defect 1 of issue 12: with CRON_TIMEZONE=America/New_York, DATE=2026-03-08 (a DST change day)
    stored 2026-03-07 and DATE=2026-10-01 distributed 2026-09. (dag.test() and the scheduler's runs
    are checked in more zones, either side of UTC, in test_daily_performance and test_dag_integrity.)"""
    job_env["CRON_TIMEZONE"] = "America/New_York"
    daily = make_job(job_env, "daily_performance", "2026-03-08")
    assert daily.returncode == 0, daily.stdout[-3000:] + daily.stderr[-2000:]
    assert book.query("SELECT DISTINCT date FROM investment.daily_performance") == [(date(2026, 3, 8),)]
    assert json_event(daily.stdout, "job_started")["business_date"] == "2026-03-08"
    monthly = make_job(job_env, "monthly_distribution", "2026-10-01")
    assert json_event(monthly.stdout, "job_started")["period"] == "2026-10"


def test_nothing_in_date_or_dag_runs_as_a_command(job_env, tmp_path: Path) -> None:  # noqa: ANN001
    """Defect 12 of issue 12: the recipe pasted $(DATE) and $(DAG) into a shell line."""
    marker = tmp_path / "pwned"
    for dag, day in [("daily_performance", f'2026-01-05"; touch {marker}; echo "'),
                     (f'daily_performance"; touch {marker}; echo "', "2026-01-05"),
                     ("daily_performance", f"2026-01-05$(touch {marker})"),
                     ("daily_performance", f"2026-01-05`touch {marker}`"),
                     ("daily_performance", f"$(shell touch {marker})2026-01-05")]:
        result = make_job(job_env, dag, day)
        assert result.returncode == 2
        assert "error:" in result.stderr
    assert not marker.exists()


def test_a_failed_run_has_its_own_exit_status(job_env, engine) -> None:  # noqa: ANN001
    """Defect 12 of issue 12: exit status 2 meant both a usage error and a failed run. The command
    behind make job exits 1 for a failed run, 2 for a usage error; make (whose own status is 2 for
    any failure) prints which it was."""
    engine.faults(down=True)
    direct = subprocess.run([PYTHON, "-m", "investment_jobs_dev.cli", "job", "--dag", "daily_performance",
                             "--date", "2026-01-05"], cwd=ROOT, env=job_env, capture_output=True, text=True,
                            timeout=600)
    assert direct.returncode == 1, direct.stdout[-2000:]
    assert "daily_performance 2026-01-05: FAILED (exit status 1)" in direct.stdout
    usage = subprocess.run([PYTHON, "-m", "investment_jobs_dev.cli", "job", "--dag", "daily_performance",
                            "--date", "2026-02-30"], cwd=ROOT, env=job_env, capture_output=True, text=True)
    assert usage.returncode == 2
    through_make = make_job(job_env, "daily_performance", "2026-02-30")
    assert through_make.returncode == 2 and "error: DATE must be a date" in through_make.stderr


def _runs_of(home: Path) -> list[psutil.Process]:
    """The processes a make job with this Airflow home started (they carry it in their environment)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(home) == proc.environ().get("AIRFLOW_HOME") and "make" not in (proc.info["cmdline"] or [""])[0]:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _cmdline(proc: psutil.Process) -> list[str]:
    """A process's command line, empty once it has gone (it may end between the listing and the look)."""
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _wait_for(condition, what: str, timeout: float = 120) -> None:  # noqa: ANN001  # float-ok: seconds
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_make_job_leaves_no_run_behind(job_env, engine, tmp_path: Path, sig: int) -> None:  # noqa: ANN001
    """Defect 12 of issue 12: a killed make left `airflow dags test` running."""
    home = tmp_path / "home"
    job_env["AIRFLOW_HOME"] = str(home)
    engine.faults(latency_ms=1500)  # a slow engine: the run is still pulling when make is killed
    make = subprocess.Popen(["make", "--no-print-directory", "job", "DAG=daily_performance", "DATE=2026-01-05"],
                            cwd=ROOT, env=job_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(lambda: any("dags" in _cmdline(p) and "test" in _cmdline(p) for p in _runs_of(home)),
                  "airflow dags test to start")
        os.kill(make.pid, sig)
        make.wait(timeout=30)
        _wait_for(lambda: not _runs_of(home), "every process of the killed make job to end", timeout=90)
    finally:
        for proc in _runs_of(home):
            proc.kill()
        engine.faults()


def test_two_make_jobs_at_once_take_turns(book, job_env) -> None:  # noqa: ANN001
    """Defect 12 of issue 12: two make job at once in one Airflow home crashed on its sqlite. The
    second waits for the first, saying so, and both runs store their dates."""
    runs = [subprocess.Popen(["make", "--no-print-directory", "job", "DAG=daily_performance", f"DATE={day}"],
                             cwd=ROOT, env=job_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for day in ("2026-01-05", "2026-01-06")]
    outputs = [proc.communicate(timeout=600)[0] for proc in runs]
    assert [proc.returncode for proc in runs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    assert any("waiting:" in o for o in outputs)
    assert book.query("SELECT DISTINCT date FROM investment.daily_performance ORDER BY 1") == [
        (date(2026, 1, 5),), (date(2026, 1, 6),)]


def test_make_job_approves_the_month_as_its_user_and_prints_the_review(book, job_env) -> None:  # noqa: ANN001
    """Issue 15: make job stays non-interactive. The person who runs it is the approver, recorded as
    ``cli:<os user>``, and it prints the review figures before it distributes."""
    import getpass

    from tests.support.book import fill_days

    fill_days(book, date(2026, 1, 1), date(2026, 1, 31))
    job_env["DISTRIBUTION_APPROVAL"] = "required"  # make job answers for its user whatever is set
    result = make_job(job_env, "monthly_distribution", "2026-01-01")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Totals by currency and product" in result.stdout
    decided = book.query("""SELECT decided_by, kind, choice, outcome, period, figures->>'accounts',
                                   figures->'totals_by_currency'->'usd'->>'net_profit'
                            FROM investment.operator_decisions""")
    paid = book.query("""SELECT count(*), sum(net_profit) FROM investment.distributions d
                         JOIN investment.products p ON p.id = d.product_id WHERE period = '2026-01'
                         AND p.currency = 'usd'""")[0]
    assert [d[:5] for d in decided] == [(f"cli:{getpass.getuser()}", "distribution_approval", "Approve", "applied",
                                         "2026-01")]
    assert int(decided[0][5]) == book.query("SELECT count(*) FROM investment.distributions")[0][0]
    assert Decimal(decided[0][6]) == paid[1]  # the approved figures are the credited ones
