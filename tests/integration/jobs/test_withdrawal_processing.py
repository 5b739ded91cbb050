"""withdrawal_processing against real PostgreSQL, the Stripe stand-in and the ML engine stand-in.

The invariant every test ends on (``assert_books_balance``): one payout per paid request in the
stand-in, and for every account the balance moved by exactly −Σ its paid payouts (reversed ones
given back), with one ledger transaction per movement.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tests.support.airflow_runs import run_dag, task_states, xcom
from tests.support.paths import ROOT, STRIPE_TEST_KEY
from tests.support.withdrawals import accounts_by_currency, add_request, balances, requests, two_runs_at_once

pytestmark = pytest.mark.integration

DAG_ID = "withdrawal_processing"
RUN_AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


# --- helpers -----------------------------------------------------------------------------------
def run():
    """One withdrawal_processing run (its logical date plays no part in what it does)."""
    return run_dag(DAG_ID, RUN_AT)


def assert_books_balance(book, stripe, initial: dict[str, Decimal]) -> None:
    """Σ balance change per account == −Σ its paid (not failed) payouts; one payout per request."""
    payouts = stripe.payouts()
    per_request = Counter(p["metadata"]["withdrawal_request_id"] for p in payouts)
    assert all(n == 1 for n in per_request.values()), f"a request was paid twice: {per_request}"
    account_of = dict(book.query("SELECT w.id::text, w.account_id::text FROM investment.withdrawal_requests w"))
    paid_out: dict[str, Decimal] = defaultdict(Decimal)
    for p in payouts:
        if p["status"] in ("failed", "canceled"):
            continue
        # what the payout is worth by Stripe's own currency rules, as the stand-in applies them
        paid_out[account_of[p["metadata"]["withdrawal_request_id"]]] += Decimal(p["major_amount"])
    balances = dict(book.query("SELECT id::text, current_balance FROM investment.accounts"))
    for account, before in initial.items():
        assert balances[account] - before == -paid_out.get(account, Decimal(0)), account
    # The ledger says the same: withdrawals minus reversals per account.
    ledger = dict(book.query(
        """SELECT account_id::text, sum(CASE WHEN type = 'withdrawal' THEN amount ELSE -amount END)
           FROM investment.transactions WHERE type IN ('withdrawal', 'withdrawal_reversal') GROUP BY 1"""))
    for account in initial:
        assert ledger.get(account, Decimal(0)) == paid_out.get(account, Decimal(0)), account


@pytest.fixture
def desk(book, stripe_standin, airflow_db):
    """The book, the Stripe stand-in, and the accounts' balances before any withdrawal."""
    return book, stripe_standin, balances(book)


# --- the happy path --------------------------------------------------------------------------------
def test_pays_each_request_once_in_its_currencys_minor_unit(desk, engine):
    book, stripe, initial = desk
    accounts = accounts_by_currency(book)
    usd = add_request(book, accounts["usd"][0], "125.40")
    jpy = add_request(book, accounts["jpy"][0], "1500")
    kwd = add_request(book, accounts["kwd"][0], "12.340")

    dag_run = run()
    assert str(dag_run.state) == "success", task_states(dag_run)
    state = requests(book)
    assert {state[r]["status"] for r in (usd, jpy, kwd)} == {"completed"}
    by_request = {p["metadata"]["withdrawal_request_id"]: p for p in stripe.payouts()}
    assert (by_request[usd]["amount"], by_request[usd]["currency"]) == (12540, "usd")
    assert (by_request[jpy]["amount"], by_request[jpy]["currency"]) == (1500, "jpy")
    assert (by_request[kwd]["amount"], by_request[kwd]["currency"]) == (12340, "kwd")
    assert by_request[usd]["metadata"] == {"withdrawal_request_id": usd, "account_id": accounts["usd"][0][0],
                                          "user_id": accounts["usd"][0][1]}
    assert by_request[usd]["destination"] == f"ba_{usd[:8]}"
    assert_books_balance(book, stripe, initial)
    tx = book.query("""SELECT withdrawal_request_id::text, amount, balance_before, balance_after, status,
                              withdrawal_destination_id FROM investment.transactions WHERE type = 'withdrawal'""")
    assert len(tx) == 3
    for rid, amount, before, after, status, dest in tx:
        assert before - amount == after and status == "completed" and dest == state[rid]["payout_id"]
    withdrawn = dict(book.query("SELECT id::text, total_withdrawn FROM investment.accounts"))
    assert withdrawn[accounts["kwd"][0][0]] == Decimal("12.340")
    # The engine heard of each completion once, with the new balance.
    notified = {n["withdrawal_request_id"]: n for n in engine.stats()["notifications"]}
    assert set(notified) == {usd, jpy, kwd}
    assert Decimal(notified[usd]["new_balance"]) == balances(book)[accounts["usd"][0][0]]
    summary = xcom(dag_run, "summarise")
    assert summary["completed"] == 3 and summary["amounts"]["completed"] == {
        "jpy": "1500.00000000", "kwd": "12.34000000", "usd": "125.40000000"}

    # A rerun finds nothing to do and changes nothing.
    before = balances(book)
    assert str(run().state) == "success"
    assert len(stripe.payouts()) == 3 and balances(book) == before
    assert book.query("SELECT count(*) FROM investment.transactions")[0][0] == 3


def test_rejects_only_what_can_never_be_paid_before_money_moves(desk):
    book, stripe, initial = desk
    accounts = accounts_by_currency(book)
    rich = accounts["usd"][0]
    suspended = book.query("""SELECT a.id::text, a.user_id::text, a.current_balance FROM investment.accounts a
                              WHERE a.status = 'suspended' LIMIT 1""")[0]
    ok_first = add_request(book, rich, str(rich[2] - Decimal("10.00")), created_offset=1)
    over_after_first = add_request(book, rich, "20.00", created_offset=2)  # only 10 left after the first
    too_big = add_request(book, accounts["eur"][0], str(accounts["eur"][0][2] + 1))
    not_active = add_request(book, suspended, "1.00")
    no_destination = add_request(book, accounts["usd"][1], "5.00", destination={})
    sub_cent = add_request(book, accounts["usd"][1], "5.001")
    kwd_odd = add_request(book, accounts["kwd"][0], "1.234")
    yen_fraction = add_request(book, accounts["jpy"][0], "10.5")

    assert str(run().state) == "success"
    state = requests(book)
    assert state[ok_first]["status"] == "completed"
    expected = {
        over_after_first: "insufficient available balance: 10.00000000 available, 20.00000000 requested",
        too_big: "insufficient available balance",
        not_active: "account is suspended, not active",
        no_destination: "destination_details has no bank_account_id",
        sub_cent: "more decimals than usd's minor unit (2)",
        kwd_odd: "Stripe pays kwd only in multiples of 0.010",
        yen_fraction: "more decimals than jpy's minor unit (0)",
    }
    for request_id, reason in expected.items():
        assert state[request_id]["status"] == "rejected"
        assert reason in state[request_id]["rejection_reason"], state[request_id]
    assert len(stripe.payouts()) == 1
    assert_books_balance(book, stripe, initial)


def test_processing_requests_reserve_their_amount(desk):
    """The available balance is the current balance minus what is already in processing."""
    book, stripe, initial = desk
    account = accounts_by_currency(book)["usd"][0]
    stripe.faults(hold=True)  # the first payout stays in transit: its request stays processing
    first = add_request(book, account, str(account[2] - Decimal("1.00")))
    assert str(run().state) == "success"
    assert requests(book)[first]["status"] == "processing"
    second = add_request(book, account, "2.00")
    assert str(run().state) == "success"
    state = requests(book)
    assert state[second]["status"] == "rejected"
    assert "1.00000000 available" in state[second]["rejection_reason"]
    stripe.faults(hold=False)
    assert str(run().state) == "success"
    assert requests(book)[first]["status"] == "completed"
    assert_books_balance(book, stripe, initial)


def test_bank_transfers_wait_for_a_person(desk):
    book, stripe, _ = desk
    account = accounts_by_currency(book)["eur"][0]
    manual = add_request(book, account, "50.00", method="bank_transfer")
    dag_run = run()
    assert str(dag_run.state) == "success"
    assert requests(book)[manual]["status"] == "approved"
    assert stripe.payouts() == []
    summary = xcom(dag_run, "summarise")
    assert summary["awaiting_manual_transfer"] == 1
    assert summary["awaiting_manual_transfer_amounts"] == {"eur": "50.00000000"}


# --- Stripe says no ---------------------------------------------------------------------------------
def test_definite_refusals_fail_the_request_with_stripes_reason(desk):
    book, stripe, initial = desk
    accounts = accounts_by_currency(book)
    bad_destination = add_request(book, accounts["usd"][0], "10.00", destination={"bank_account_id": "xx_nope"})
    stripe.balance(eur=100)  # 1.00 eur on the platform's Stripe balance
    no_platform_funds = add_request(book, accounts["eur"][0], "5.00")
    dag_run = run()
    assert str(dag_run.state) == "success", "definite refusals are outcomes, not run failures"
    state = requests(book)
    assert state[bad_destination]["status"] == "failed"
    assert state[bad_destination]["failure_code"] == "resource_missing"
    assert "No such external account" in state[bad_destination]["failure_message"]
    assert (state[no_platform_funds]["status"], state[no_platform_funds]["failure_code"]) == (
        "failed", "balance_insufficient")
    assert stripe.payouts() == []
    assert balances(book) == initial
    # A failed request no longer reserves: the same account can withdraw its whole balance again.
    again = add_request(book, accounts["usd"][0], str(accounts["usd"][0][2]))
    assert str(run().state) == "success"
    assert requests(book)[again]["status"] == "completed"
    assert_books_balance(book, stripe, initial)


@pytest.mark.parametrize("refusal", ["wrong key (401)", "restricted key (403)"])
def test_a_wrong_or_rotated_key_stops_the_run_and_changes_no_request(desk, monkeypatch, caplog, webhook, refusal):
    """Defect 6 of issue 12: a wrong key used to move every claimed request to the final `failed`.
    It is the platform's problem, not the requests': the run stops at the first refusal, every
    request stays where it was, the failure notifier alerts, and the next run with a good key pays
    each once. The key never reaches a log, an XCom or the database."""
    book, stripe, initial = desk
    url, alerts = webhook
    monkeypatch.setenv("ALERT_WEBHOOK_URL", url)
    bad_key = "sk_test_" + "wrongwrongwrong0123456789" if refusal.startswith("wrong") else "rk_test_" + "r" * 24
    if refusal.startswith("restricted"):
        stripe.restricted_keys(bad_key)
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(
        {"conn_type": "stripe", "host": stripe.url, "password": bad_key}))
    accounts = accounts_by_currency(book)
    request_ids = [add_request(book, accounts["usd"][i], "10.00", created_offset=i) for i in range(3)]
    caplog.set_level("DEBUG")
    dag_run = run()
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["pay"] == "failed"
    state = requests(book)
    assert {state[r]["status"] for r in request_ids} == {"processing"}, state
    assert all(state[r]["failure_code"] is None and state[r]["payout_id"] is None for r in request_ids)
    refused = stripe.stats()["stats"]
    assert refused.get("refused 401", 0) + refused.get("refused 403", 0) == 1, "the run stops at the first refusal"
    assert any("Stripe refused the API key" in json.dumps(a) for a in alerts), alerts
    assert bad_key not in caplog.text and bad_key not in json.dumps(xcom(dag_run, "summarise"), default=str)
    assert bad_key not in json.dumps(book.query("SELECT * FROM investment.withdrawal_requests"), default=str)
    for path in (ROOT / ".local" / "test-airflow").rglob("*.log"):
        assert bad_key not in path.read_text(errors="replace"), path
    assert balances(book) == initial

    # The key is fixed: the next run pays each request once, with the same idempotency keys.
    monkeypatch.setenv("AIRFLOW_CONN_STRIPE_DEFAULT", json.dumps(
        {"conn_type": "stripe", "host": stripe.url, "password": STRIPE_TEST_KEY}))
    assert str(run().state) == "success"
    assert {requests(book)[r]["status"] for r in request_ids} == {"completed"}
    assert sorted(p["metadata"]["withdrawal_request_id"] for p in stripe.payouts()) == sorted(request_ids)
    assert_books_balance(book, stripe, initial)


def test_a_payout_id_stripe_does_not_know_holds_that_request_only(desk):
    """Defect 4 of issue 12: one processing request whose payout Stripe answers 404 for made settle
    fail for every request, every run, paid payouts included. That request goes to an operator with
    the reason; the others settle; later runs leave it alone."""
    book, stripe, initial = desk
    accounts = accounts_by_currency(book)
    good = [add_request(book, accounts["usd"][i], "7.00", created_offset=i) for i in range(2)]
    stray = add_request(book, accounts["eur"][0], "9.00", created_offset=5)
    with book.connect() as conn:  # a request some earlier run left with a payout id Stripe never made
        conn.execute("""UPDATE investment.withdrawal_requests SET status = 'processing', currency = 'eur',
                            payout_amount_minor = 900, claimed_at = now(), payout_id = 'po_unknown_to_stripe',
                            first_attempt_at = now(), payout_attempts = 1 WHERE id = %s""", (stray,))
    dag_run = run()
    state = requests(book)
    assert {state[r]["status"] for r in good} == {"completed"}
    assert state[stray]["status"] == "processing"
    assert "Stripe does not know payout po_unknown_to_stripe" in state[stray]["needs_operator"]
    assert book.query("SELECT operator_case FROM investment.withdrawal_requests WHERE id = %s",
                      (stray,)) == [("payout_unknown",)]
    assert str(dag_run.state) == "failed"  # it says an operator is needed
    assert task_states(dag_run)["settle"] == "success" and task_states(dag_run)["summarise"] == "failed"
    reads = stripe.stats()["stats"].get("GET /v1/payouts/{id}", 0)
    run()  # the next run does not ask Stripe about the held request again
    assert stripe.stats()["stats"].get("GET /v1/payouts/{id}", 0) == reads
    assert_books_balance(book, stripe, {a: b for a, b in initial.items() if a != accounts["eur"][0][0]})


def test_an_account_closed_after_the_claim_is_not_paid(desk, monkeypatch):
    """Defect 8 of issue 12: an account closed or suspended between claim and pay was still paid and
    debited. At pay time the account is checked again: with no earlier attempt the request is
    rejected with the reason and its reservation released; nothing reaches Stripe."""
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim

    book, stripe, initial = desk
    accounts = accounts_by_currency(book)
    closing, suspending, fine = accounts["usd"][0], accounts["usd"][1], accounts["eur"][0]
    requested = {add_request(book, a, "3.00", created_offset=i): a for i, a in enumerate((closing, suspending, fine))}
    with connect() as conn:
        claim.claim_requests(conn, "manual__claim", 100)
    with book.connect() as conn:
        conn.execute("UPDATE investment.accounts SET status = 'closed', closed_at = now() WHERE id = %s",
                     (closing[0],))
        conn.execute("UPDATE investment.accounts SET status = 'suspended' WHERE id = %s", (suspending[0],))
    assert str(run().state) == "success"
    state = requests(book)
    by_account = {a[0]: state[r] for r, a in requested.items()}
    assert by_account[closing[0]]["status"] == "rejected"
    assert "account became closed after the request was claimed; nothing was paid" in (
        by_account[closing[0]]["rejection_reason"])
    assert by_account[suspending[0]]["status"] == "rejected"
    assert by_account[fine[0]]["status"] == "completed"
    assert [p["metadata"]["account_id"] for p in stripe.payouts()] == [fine[0]]
    assert_books_balance(book, stripe, initial)


def test_an_account_closed_after_an_attempt_waits_for_an_operator(desk):
    """After an earlier (ambiguous) attempt a payout may exist: the request is not rejected but held."""
    book, stripe, _ = desk
    account = accounts_by_currency(book)["usd"][0]
    request_id = add_request(book, account, "4.00")
    stripe.faults(fail_next=[503, 503, 503, 503])
    run()
    assert requests(book)[request_id]["status"] == "processing"
    with book.connect() as conn:
        conn.execute("UPDATE investment.accounts SET status = 'suspended' WHERE id = %s", (account[0],))
    stripe.faults()
    run()
    state = requests(book)[request_id]
    assert state["status"] == "processing" and "a payout may exist" in state["needs_operator"]
    assert stripe.payouts() == []


@pytest.mark.parametrize(("currency", "amount", "sent", "major"), [
    ("isk", "500", 50000, "500.00"),
    ("ugx", "1200", 120000, "1200.00"),
    ("huf", "1234", 123400, "1234.00"),
    ("mga", "1000", 1000, "1000"),
])
def test_amounts_are_sent_in_stripes_minor_units_not_isos(desk, currency, amount, sent, major):
    """Defect 7 of issue 12: ISK 500 was sent as 500, which Stripe reads as 5 ISK. The stand-in
    applies Stripe's currency rules on its own (not the package's table), so this checks the package
    against Stripe: the payout is worth what the ledger debits."""
    book, stripe, initial = desk
    account = _account_in(book, currency)
    request_id = add_request(book, account, amount)
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    (payout,) = stripe.payouts()
    assert (payout["amount"], payout["currency"], payout["major_amount"]) == (sent, currency, major)
    assert Decimal(payout["major_amount"]) == Decimal(amount)
    assert_books_balance(book, stripe, initial)


@pytest.mark.parametrize(("currency", "amount", "why"), [
    ("huf", "1234.50", "Stripe pays huf only in multiples of 1.00"),
    ("mga", "1000.20", "more decimals than Stripe's mga minor unit (0)"),
])
def test_amounts_stripe_cannot_pay_exactly_are_rejected_before_money_moves(desk, currency, amount, why):
    book, stripe, initial = desk
    request_id = add_request(book, _account_in(book, currency), amount)
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert state["status"] == "rejected" and why in state["rejection_reason"]
    assert stripe.payouts() == []


def _account_in(book, currency: str) -> tuple[str, str, Decimal]:
    """An active account of a product in ``currency`` (a product is added for it)."""
    with book.connect() as conn:
        product = conn.execute("INSERT INTO investment.products (name, currency, performance_fee_percentage) "
                               "VALUES (%s, %s, 10) RETURNING id", (f"{currency} fund", currency)).fetchone()[0]
        row = conn.execute(
            """INSERT INTO investment.accounts (user_id, product_id, initial_investment, current_balance, opened_at)
               VALUES (gen_random_uuid(), %s, 100000, 100000, '2025-01-01') RETURNING id::text, user_id::text,
               current_balance""", (product,)).fetchone()
    return row


# --- ambiguous answers: the request stays processing and the next run finishes it ------------------
@pytest.mark.parametrize("fault", [
    {"fail_next": [429, 429]},
    {"fail_next": [500]},
    {"fail_next": [503]},
    {"drop_after_create_next": 1},
    {"slow_after_create_next": 1, "slow_seconds": 3},
], ids=["429", "500-before", "503-before", "dropped-after-create", "slow-after-create"])
def test_ambiguous_answers_keep_processing_then_pay_once(desk, monkeypatch, fault):
    """The pay step alone, without stripe-python's retries: the request stays processing with the
    error; the next run pays it with the same key (a replay when the payout was already made)."""
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, pay

    book, stripe, initial = desk
    monkeypatch.setenv("STRIPE_NETWORK_RETRIES", "0")
    request_id = add_request(book, accounts_by_currency(book)["usd"][0], "42.00")
    stripe.faults(**fault)
    with connect() as conn:
        claim.claim_requests(conn, "first-run", 100)
        counts = pay.pay_requests(conn, _stripe_client(), timedelta(hours=23), rate_limit_attempts=2)
    assert counts["ambiguous"] == 1 and counts["payouts_created"] == 0
    state = requests(book)[request_id]
    assert state["status"] == "processing" and state["payout_id"] is None and state["last_error"]
    made_before = len(stripe.payouts())
    assert made_before == (1 if "after_create" in next(iter(fault)) else 0)
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    assert len(stripe.payouts()) == 1
    if made_before:
        assert stripe.stats()["stats"]["idempotent_replays"] == 1
    assert_books_balance(book, stripe, initial)


def test_a_run_whose_payouts_stay_ambiguous_fails_and_says_so(desk):
    """429s through both tries of the pay task: the run fails, the request waits in processing."""
    book, stripe, initial = desk
    request_id = add_request(book, accounts_by_currency(book)["usd"][0], "42.00")
    stripe.faults(fail_next=[429] * 4)  # 2 attempts per try, 2 tries (TASK_RETRIES=1)
    dag_run = run()
    assert str(dag_run.state) == "failed"
    states = task_states(dag_run)
    assert (states["pay"], states["settle"], states["summarise"]) == ("failed", "success", "failed")
    state = requests(book)[request_id]
    assert state["status"] == "processing" and state["last_error"].startswith("rate_limit:"), state
    assert stripe.payouts() == []
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    assert_books_balance(book, stripe, initial)


def test_a_stored_500_is_replayed_until_the_key_window_then_found_by_metadata(desk, monkeypatch):
    """Stripe stores a 500 that happened after the payout was made and replays it for the key; past
    the 24 h window the job looks the payout up by metadata instead of creating a second one."""
    book, stripe, initial = desk
    monkeypatch.setenv("TASK_RETRIES", "0")
    request_id = add_request(book, accounts_by_currency(book)["usd"][0], "42.00")
    stripe.faults(error_after_create_next=1)
    assert str(run().state) == "failed"
    assert str(run().state) == "failed"  # the same key gets the same stored 500
    assert len(stripe.payouts()) == 1 and requests(book)[request_id]["status"] == "processing"
    with book.connect() as conn:
        conn.execute("UPDATE investment.withdrawal_requests SET first_attempt_at = now() - interval '25 hours'")
    stripe.forget_keys()
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    assert len(stripe.payouts()) == 1
    assert_books_balance(book, stripe, initial)


def test_a_concurrent_request_with_the_same_key_gets_409_and_one_payout(stripe_standin):
    """The stand-in's idempotency rules, through stripe-python unchanged."""
    import stripe as stripe_lib

    from investment_jobs.stripe.hook import StripeHook

    client = StripeHook(max_network_retries=0).get_conn()
    params = {"amount": 1000, "currency": "usd", "destination": "ba_x", "metadata": {"withdrawal_request_id": "r"}}
    stripe_standin.faults(in_flight_seconds=1.0)
    results: list = []

    def create() -> None:
        try:
            results.append(client.v1.payouts.create(params=params, options={"idempotency_key": "withdrawal-r"}).id)
        except stripe_lib.StripeError as exc:
            results.append(exc.http_status)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results))[0] == "409"
    stripe_standin.faults()
    replay = client.v1.payouts.create(params=params, options={"idempotency_key": "withdrawal-r"})
    assert replay.id in results and len(stripe_standin.payouts()) == 1
    with pytest.raises(stripe_lib.IdempotencyError):
        client.v1.payouts.create(params={**params, "amount": 999}, options={"idempotency_key": "withdrawal-r"})


# --- settle: in flight, failed later ------------------------------------------------------------------
def test_a_payout_that_fails_after_paid_is_reversed_once(desk):
    book, stripe, initial = desk
    account = accounts_by_currency(book)["usd"][0]
    request_id = add_request(book, account, "99.99")
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    payout_id = requests(book)[request_id]["payout_id"]
    stripe.set_payout(payout_id, status="failed", failure_code="account_closed",
                      failure_message="The bank account has been closed.")
    assert str(run().state) == "success"
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert (state["status"], state["failure_code"]) == ("failed", "account_closed")
    assert balances(book)[account[0]] == initial[account[0]]
    rows = book.query("""SELECT type, status, amount, balance_before, balance_after FROM investment.transactions
                         ORDER BY created_at""")
    assert [(r[0], r[1]) for r in rows] == [("withdrawal", "reversed"), ("withdrawal_reversal", "completed")]
    assert rows[1][4] - rows[1][3] == Decimal("99.99")
    assert book.query("SELECT total_withdrawn FROM investment.accounts WHERE id = %s", (account[0],))[0][0] == 0
    assert_books_balance(book, stripe, initial)


def test_a_payout_failed_before_paid_fails_the_request_and_releases_it(desk):
    book, stripe, initial = desk
    account = accounts_by_currency(book)["usd"][0]
    stripe.faults(hold=True)
    request_id = add_request(book, account, "10.00")
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert (state["status"], state["payout_status"]) == ("processing", "in_transit")
    stripe.set_payout(state["payout_id"], status="failed", failure_code="no_account",
                      failure_message="The bank account details on file are probably incorrect.")
    assert str(run().state) == "success"
    state = requests(book)[request_id]
    assert (state["status"], state["failure_code"]) == ("failed", "no_account")
    assert balances(book) == initial
    assert book.query("SELECT count(*) FROM investment.transactions")[0][0] == 0


# --- crashes --------------------------------------------------------------------------------------------
def _stripe_client():
    from investment_jobs.stripe.hook import StripeHook

    return StripeHook().get_conn()


def test_crash_after_the_claim(desk):
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim

    book, stripe, initial = desk
    ids = [add_request(book, a, "10.00", created_offset=i) for i, a in enumerate(accounts_by_currency(book)["usd"])]
    with connect() as conn:
        claim.claim_requests(conn, "crashed-run", 100)
    # The process dies here; the next run finds the requests processing without a payout.
    assert {requests(book)[r]["status"] for r in ids} == {"processing"}
    assert str(run().state) == "success"
    assert {requests(book)[r]["status"] for r in ids} == {"completed"}
    assert len(stripe.payouts()) == len(ids)
    assert_books_balance(book, stripe, initial)


def test_crash_after_stripe_answered_before_our_commit(desk, monkeypatch):
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, pay

    book, stripe, initial = desk
    ids = [add_request(book, a, "10.00", created_offset=i) for i, a in enumerate(accounts_by_currency(book)["usd"])]

    def crash(*args, **kwargs):
        raise SystemExit("killed between Stripe's answer and our commit")

    with monkeypatch.context() as patch, connect() as conn, pytest.raises(SystemExit):
        patch.setattr(pay, "record_payout", crash)
        claim.claim_requests(conn, "crashed-run", 100)
        pay.pay_requests(conn, _stripe_client(), timedelta(hours=23))
    assert len(stripe.payouts()) == 1  # Stripe made one payout that we never recorded
    assert str(run().state) == "success"
    assert {requests(book)[r]["status"] for r in ids} == {"completed"}
    assert len(stripe.payouts()) == len(ids)
    assert stripe.stats()["stats"]["idempotent_replays"] >= 1
    assert_books_balance(book, stripe, initial)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from datetime import timedelta
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim, notify, pay, settle
    from investment_jobs.stripe.hook import StripeHook

    point = sys.argv[1]
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "after_stripe_answered":
        pay.record_payout = die
    elif point == "after_completion_commit":
        notify.deliver_notifications = die
    with connect() as conn:
        client = StripeHook().get_conn()
        claim.claim_requests(conn, "killed-run", 100)
        pay.pay_requests(conn, client, timedelta(hours=23))
        settle.settle_payouts(conn, client, timedelta(days=10))
        notify.deliver_notifications(conn, None, 100)
""")


@pytest.mark.parametrize("point", ["after_stripe_answered", "after_completion_commit"])
def test_killed_task_process_is_finished_by_the_next_run(desk, engine, point):
    """SIGKILL the process at the point; the next run pays nothing twice and loses nothing."""
    book, stripe, initial = desk
    ids = [add_request(book, a, "7.00", created_offset=i) for i, a in enumerate(accounts_by_currency(book)["usd"])]
    env = {**os.environ, "AIRFLOW_CONN_INVESTMENT_DB": book.dsn}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, point], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    if point == "after_completion_commit":
        assert {requests(book)[r]["status"] for r in ids} == {"completed"}
        assert book.query("SELECT count(*) FROM investment.withdrawal_notifications WHERE status = 'pending'"
                          )[0][0] == len(ids)
    assert str(run().state) == "success"
    assert {requests(book)[r]["status"] for r in ids} == {"completed"}
    assert len(stripe.payouts()) == len(ids)
    notified = Counter(n["withdrawal_request_id"] for n in engine.stats()["notifications"])
    assert set(notified) == set(ids)
    assert_books_balance(book, stripe, initial)


def test_two_runs_at_once_pay_each_request_once(desk):
    book, stripe, initial = desk
    ids = []
    for currency, accounts in accounts_by_currency(book).items():
        amount = {"jpy": "300", "kwd": "1.230"}.get(currency, "3.00")
        for i, account in enumerate(accounts):
            ids += [add_request(book, account, amount, created_offset=i * 10 + k) for k in range(3)]
    two_runs_at_once(first_batch=7)  # small batches, so the runs interleave
    claimed_by = Counter(r[0] for r in book.query("SELECT claimed_by_run FROM investment.withdrawal_requests"))
    assert sum(claimed_by.values()) == len(ids)
    assert {requests(book)[r]["status"] for r in ids} == {"completed"}
    assert len(stripe.payouts()) == len(ids)
    assert_books_balance(book, stripe, initial)


# --- the ML engine outbox -----------------------------------------------------------------------------
def test_engine_outage_leaves_withdrawals_alone_and_delivers_later(desk, engine):
    book, stripe, initial = desk
    engine.faults(down=True)
    request_id = add_request(book, accounts_by_currency(book)["usd"][0], "10.00")
    dag_run = run()
    assert str(dag_run.state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    summary = xcom(dag_run, "summarise")
    assert summary["steps"]["deliver_notifications"]["notifications_pending"] == 1
    assert engine.stats()["notifications"] == []
    engine.faults()
    assert str(run().state) == "success"
    assert [n["withdrawal_request_id"] for n in engine.stats()["notifications"]] == [request_id]
    assert book.query("SELECT status FROM investment.withdrawal_notifications")[0][0] == "delivered"
    assert_books_balance(book, stripe, initial)


# --- current_balance between two daily_performance runs ----------------------------------------------
def test_current_balance_keeps_a_withdrawal_completed_between_two_daily_runs(desk):
    """daily D, then a withdrawal during D+1, then a rerun of D: the balance keeps the withdrawal.
    The run of D+1 takes the engine's closing for D+1, which includes it (the engine was notified)."""
    book, stripe, _ = desk
    day = date(2025, 12, 1)
    assert str(run_dag("daily_performance", day).state) == "success"
    account = accounts_by_currency(book)["usd"][0]
    closing_d = book.query("SELECT closing_balance FROM investment.daily_performance WHERE account_id = %s "
                           "AND date = %s", (account[0], day))[0][0]
    assert balances(book)[account[0]] == closing_d
    request_id = add_request(book, account, "100.00")
    assert str(run().state) == "success"
    with book.connect() as conn:  # it completed at 10:00 on D+1, between the two daily runs
        conn.execute("UPDATE investment.transactions SET processed_at = %s::date + interval '34 hours' "
                     "WHERE withdrawal_request_id = %s", (day, request_id))
    assert balances(book)[account[0]] == closing_d - 100
    assert str(run_dag("daily_performance", day).state) == "success"  # an operator reruns D
    assert balances(book)[account[0]] == closing_d - 100
    assert str(run_dag("daily_performance", day + timedelta(days=1)).state) == "success"
    closing_next = book.query("SELECT closing_balance FROM investment.daily_performance WHERE account_id = %s "
                              "AND date = %s", (account[0], day + timedelta(days=1)))[0][0]
    assert balances(book)[account[0]] == closing_next


def test_a_balance_lowered_after_the_claim_never_goes_below_zero(desk):
    """daily_performance lowers the balance (a loss) after the claim and before Stripe says paid:
    the payout is not completed into a negative balance; an operator is asked, and once the
    balance covers it again the next run completes it, once."""
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs.withdrawals import claim

    book, stripe, initial = desk
    account = accounts_by_currency(book)["usd"][0]
    request_id = add_request(book, account, "80.00")
    with connect() as conn:
        claim.claim_requests(conn, "run-1", 100)
    with book.connect() as conn:  # what a daily run with a bad day would do meanwhile
        conn.execute("UPDATE investment.accounts SET current_balance = 50 WHERE id = %s", (account[0],))
    dag_run = run()
    assert str(dag_run.state) == "failed"
    state = requests(book)[request_id]
    assert state["status"] == "processing" and "no longer covers" in state["needs_operator"]
    assert balances(book)[account[0]] == Decimal("50") and len(stripe.payouts()) == 1
    with book.connect() as conn:  # the operator reconciles the balance and clears the flag
        conn.execute("UPDATE investment.accounts SET current_balance = 120 WHERE id = %s", (account[0],))
        conn.execute("UPDATE investment.withdrawal_requests SET needs_operator = NULL WHERE id = %s", (request_id,))
    assert str(run().state) == "success"
    assert requests(book)[request_id]["status"] == "completed"
    assert balances(book)[account[0]] == Decimal("40.00") and len(stripe.payouts()) == 1
