"""GET /health/jobs over HTTP, from the plugin mounted on a running `airflow api-server`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from investment_jobs_dev.standins.launcher import free_port
from tests.support.airflow_runs import run_dag
from tests.support.paths import PYTHON, ROOT

pytestmark = pytest.mark.integration


def _start_api_server():  # noqa: ANN202
    port = free_port()
    log = ROOT / ".local" / f"api-server-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.log"
    proc = subprocess.Popen([os.path.join(os.path.dirname(PYTHON), "airflow"), "api-server", "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "AIRFLOW__API__WORKERS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(f"api-server did not start: {log.read_text()[-3000:]}") from None
            time.sleep(0.5)
    return url, proc


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def api_server(airflow_db):  # noqa: ANN001, ANN201
    url, proc = _start_api_server()
    yield url
    _stop(proc)


def get_health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}/health/jobs", timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_is_200_when_money_jobs_are_on_time_and_503_when_one_fails(
        api_server, investment_db, engine, stripe_standin):  # noqa: ANN001
    today = datetime.now(UTC).date()  # clock-ok: health is about the present
    yesterday = today - timedelta(days=1)
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    for dag_id, day in (("daily_performance", yesterday), ("monthly_distribution", last_month),
                        ("withdrawal_processing", today)):
        logical = datetime(day.year, day.month, day.day, tzinfo=UTC)
        assert str(run_dag(dag_id, logical).state) == "success", dag_id

    status, body = get_health(api_server)
    assert status == 200, body
    jobs = body["jobs"]
    assert set(jobs) == {"daily_performance", "monthly_distribution", "withdrawal_processing",
                         "ml_performance_sync", "data_cleanup", "stripe_reconciliation"}
    daily = jobs["daily_performance"]
    assert daily["status"] == "ok" and daily["last_completed"] == yesterday.isoformat()
    assert daily["schedule"] and daily["last_run"]["state"] == "success"
    assert daily["lag_seconds"] is not None and daily["lag_seconds"] < daily["late_after_seconds"]
    assert jobs["monthly_distribution"]["last_completed"] == f"{last_month:%Y-%m}"
    assert jobs["withdrawal_processing"]["status"] == "ok"

    engine.faults(down=True)  # the next daily run fails
    assert str(run_dag("daily_performance", datetime(yesterday.year, yesterday.month, yesterday.day,
                                                     tzinfo=UTC) + timedelta(hours=1)).state) == "failed"
    status, body = get_health(api_server)
    assert status == 503
    assert body["unhealthy_money_jobs"] == ["daily_performance"]
    assert body["jobs"]["daily_performance"]["status"] == "failed"


def _paused(dag_ids: set[str]) -> dict[str, bool]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {m.dag_id: bool(m.is_paused) for m in session.scalars(select(DagModel).where(DagModel.dag_id.in_(dag_ids)))}


def test_jobs_on_and_off_unpause_and_pause_all_six(airflow_db) -> None:  # noqa: ANN001
    """`make jobs-on` / `make jobs-off`: the original's JobManager start and stop."""
    from investment_jobs import config

    airflow = os.path.join(os.path.dirname(PYTHON), "airflow")
    subprocess.run([airflow, "dags", "reserialize"], check=True, capture_output=True, timeout=300)
    dag_ids = set(config.SCHEDULES)
    for state, paused in (("on", False), ("off", True)):
        done = subprocess.run([PYTHON, "-m", "investment_jobs_dev.cli", "jobs", state], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert _paused(dag_ids) == dict.fromkeys(dag_ids, paused)
        for dag_id in dag_ids:
            assert f"{dag_id}: {state}" in done.stdout


WEBHOOK_SECRET = "whsec_health_" + "x" * 20


@pytest.fixture
def api_server_with_book(airflow_db, investment_db, monkeypatch):  # noqa: ANN001, ANN201
    """An API server that sees this test's investment database and the webhook signing secret."""
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_WEBHOOK", json.dumps({"conn_type": "stripe", "password": WEBHOOK_SECRET}))
    url, proc = _start_api_server()
    yield url
    _stop(proc)


def test_the_api_server_takes_signed_webhooks_and_health_shows_the_last_reconciliation(
        api_server_with_book, investment_db, engine, stripe_standin):  # noqa: ANN001
    import psycopg

    from investment_jobs_dev.standins.stripe_webhooks import signature_header

    url = api_server_with_book
    body = json.dumps({"id": "evt_via_api_server", "object": "event", "type": "payout.paid", "created": 1767225600,
                       "data": {"object": {"id": "po_x", "object": "payout", "status": "paid"}}}).encode()
    signed = signature_header(body, WEBHOOK_SECRET, int(time.time()))
    request = urllib.request.Request(f"{url}/stripe/webhooks", data=body, method="POST",
                                     headers={"Stripe-Signature": signed, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert (resp.status, json.loads(resp.read())["stored"]) == (200, True)
    bad = urllib.request.Request(f"{url}/stripe/webhooks", data=body, method="POST",
                                 headers={"Stripe-Signature": signed.replace("v1=", "v1=0"), "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=30)
    assert refused.value.code == 400
    with psycopg.connect(investment_db) as conn:
        assert conn.execute("SELECT id FROM investment.stripe_events").fetchall() == [("evt_via_api_server",)]

    yesterday = datetime.now(UTC).date() - timedelta(days=1)  # clock-ok: health is about the present
    assert str(run_dag("stripe_reconciliation", datetime(yesterday.year, yesterday.month, yesterday.day, 2,
                                                         tzinfo=UTC)).state) == "success"
    _, health = get_health(url)
    assert health["jobs"]["stripe_reconciliation"]["last_reconciliation"] == {
        "business_date": yesterday.isoformat(), "differences": 0, "payouts_at_stripe": 0, "transfers_at_stripe": 0,
        "run_id": health["jobs"]["stripe_reconciliation"]["last_reconciliation"]["run_id"]}
    assert health["jobs"]["stripe_reconciliation"]["status"] == "ok"


def _token(url: str) -> str:
    """A JWT as the UI gets one: the simple auth manager's generated admin password."""
    from tests.support.paths import AIRFLOW_HOME

    passwords = json.loads((AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated").read_text())
    request = urllib.request.Request(f"{url}/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": "admin", "password": passwords["admin"]}).encode())
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_fund_view_needs_an_airflow_login_and_is_in_the_navigation(api_server_with_book):  # noqa: ANN001
    url = api_server_with_book
    for path in ("/fund/", "/fund/csv/book", "/fund/static/plotly.min.js"):
        status, body = _get(f"{url}{path}")
        assert status == 401 and "log in to Airflow" in body, path
    assert _get(f"{url}/fund/", {"Authorization": "Bearer not.a.token"})[0] in (401, 403)
    token = _token(url)
    status, body = _get(f"{url}/fund/", {"Authorization": f"Bearer {token}"})
    assert status == 200 and "Fund operations" in body
    status, body = _get(f"{url}/fund/", {"Cookie": f"_token={token}"})  # the UI's session, as the iframe sends it
    assert status == 200 and 'id="payouts"' in body
    status, plugins = _get(f"{url}/api/v2/plugins", {"Authorization": f"Bearer {token}"})
    views = [v for p in json.loads(plugins)["plugins"] for v in p.get("external_views", [])]
    assert {"name": "Fund", "href": "/fund/", "url_route": "fund"}.items() <= views[0].items()
