"""Four eyes on money: a month is approved by a person before it is credited (Airflow's HITL).

``DistributionApprovalOperator`` is Airflow's ``HITLOperator`` (answered in the UI's *Required
Actions* or through the REST API) with what a fund's back office adds to it:

- the page is built at run time from the run's computed figures (``jobs.monthly_review``), and
  the approval pins them: ``distribute`` writes exactly the approved rows or nothing;
- every answer is recorded in ``investment.operator_decisions`` with the figures shown, and so is
  a timeout and a refusal;
- ``MONEY_APPROVERS``: an answer from anyone else is refused (recorded) and the question is asked
  again, in the same wait. (Airflow's ``assigned_users`` would refuse them too, but with a 403 that
  leaves no trace here; a refusal has to be on the audit trail.)
- ``DISTRIBUTION_APPROVAL=auto`` (tests, small books) or ``cli:<user>`` (``make job``: the person
  who ran it) decide at once, recorded as such;
- the waiting approval is announced (log line and webhook) with a link to its page.

Imported by the DAG file at parse time: Airflow imports only; the package's own at run time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param

log = logging.getLogger("investment_jobs.approvals")

APPROVE, REJECT = "Approve", "Reject"
DAG_ID = "monthly_distribution"


class ApprovalRejected(Exception):
    """A person rejected the month: nothing was written."""


class ApprovalTimedOut(Exception):
    """Nobody decided within the timeout: nothing was written."""


def _responder(event: dict[str, Any]) -> str | None:
    user = event.get("responded_by_user") or {}
    return (user.get("name") or user.get("id")) if isinstance(user, dict) else str(user)


class AskingOperator(HITLOperator):
    """Airflow's HITLOperator whose question (options, subject, body) is built at run time."""

    ui_color = "#fce8b2"

    def _ask(self, context: Any) -> None:
        """Write (or, after an unusable answer, reopen) this task's Required Action."""
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        upsert_hitl_detail(ti_id=context["task_instance"].id, options=self.options, subject=self.subject,
                           body=self.body, defaults=self.defaults, multiple=self.multiple,
                           params=self.serialized_params, assigned_users=None)


class DistributionApprovalOperator(AskingOperator):
    """Ask for the approval of period P's computed distributions; return what was approved."""

    template_fields = ("assessment",)
    def __init__(self, *, assessment: Any, **kwargs: Any) -> None:
        from investment_jobs import config

        super().__init__(
            subject="Approve the month's distributions",
            options=[APPROVE, REJECT],
            params={"reason": Param("", type="string", title="Reason",
                                    description="Why (required to reject); recorded with the decision")},
            response_timeout=config.distribution_approval_timeout(),
            **{"retries": 0, **kwargs},
        )
        self.assessment = assessment

    # --- asking ------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        from investment_jobs import config
        from investment_jobs.db.connect import connect
        from investment_jobs.db.staging import RunReference
        from investment_jobs.jobs import monthly_review
        from investment_jobs.money import shown

        run = RunReference.from_xcom(self.assessment["run"])
        mode = config.distribution_approval()
        with connect() as conn:
            review = monthly_review.review(conn, run, config.distribution_review_fee_alert(),
                                           config.distribution_review_change_alert())
        figures = review.figures()
        if review.accounts == 0:
            log.info("period %s: no account to distribute, nothing to approve", run.key)
            return {"approved": True, "decided_by": None, "fingerprint": review.fingerprint, "accounts": 0}
        if mode != "required":
            decided_by = "auto" if mode == "auto" else mode
            if mode.startswith("cli:"):
                print(monthly_review.printable(review), flush=True)  # noqa: T201 - make job shows it
            decision_id = self._record(context, run.key, decided_by, APPROVE, "applied", None, figures,
                                       f"{mode}:{review.fingerprint}")
            return {"approved": True, "decided_by": decided_by, "fingerprint": review.fingerprint,
                    "accounts": review.accounts, "decision_id": decision_id}

        totals = "; ".join(f"{cur} net {shown(t['net_profit'], cur)}"
                           for cur, t in review.totals().items())
        self.subject = f"Approve {run.key}: {review.accounts} account(s), {totals}"[:250]
        self.body = monthly_review.render(review)
        deadline = datetime.now(UTC) + self.response_timeout  # clock-ok: how long a person has to answer
        self._ask(context)
        announce_waiting(self, context, deadline, period=run.key, accounts=review.accounts)
        return park(deadline, figures=figures)

    # --- the answer --------------------------------------------------------------------------
    def execute_complete(self, context: Any, event: dict[str, Any], figures: dict[str, Any] | None = None,
                         deadline: str | None = None) -> dict[str, Any]:
        figures = figures or {}
        period = figures.get("period")
        who = _responder(event)
        if "error" in event or not who:
            self._record(context, period, "timeout", "no answer", "timed_out",
                         f"no answer within {self.response_timeout}", figures, "timeout")
            raise ApprovalTimedOut(f"period {period}: nobody approved or rejected it within "
                                   f"DISTRIBUTION_APPROVAL_TIMEOUT ({self.response_timeout}); nothing was written. "
                                   "Rerun the period to ask again")
        chosen = list(event.get("chosen_options") or [])
        reason = str((event.get("params_input") or {}).get("reason") or "").strip() or None
        choice = chosen[0] if chosen else "none"
        answered = str(event.get("responded_at"))
        if choice not in self.options:
            raise ValueError(f"the answer {chosen!r} is not one of {self.options}")
        if (problem := refusal(who)) is not None:
            self._record(context, period, who, choice, "refused", problem, figures, f"refused:{answered}")
            log.warning("period %s: %s answered %s but is not in MONEY_APPROVERS: asking again", period, who, choice)
            if not wait_again(deadline):
                raise ApprovalTimedOut(f"period {period}: only a refused answer (from {who}) before the timeout; "
                                       "nothing was written")
            self._ask(context)  # clears the refused answer: the page asks again
            return park(datetime.fromisoformat(deadline), figures=figures)  # type: ignore[arg-type]
        if choice == REJECT and not reason:  # the run's failure says why: a rejection needs one
            self._record(context, period, who, choice, "not_applied", "a rejection needs a reason", figures,
                         f"unreasoned:{answered}")
            if not wait_again(deadline):
                raise ApprovalTimedOut(f"period {period}: only a rejection without a reason (from {who}) before "
                                       "the timeout; nothing was written")
            self._ask(context)
            return park(datetime.fromisoformat(deadline), figures=figures)  # type: ignore[arg-type]
        decision_id = self._record(context, period, who, choice, "applied", reason, figures, f"answer:{answered}")
        if choice == REJECT:
            raise ApprovalRejected(f"period {period} rejected by {who}: {reason}. "
                                   "Nothing was written; rerun the period once it is fixed")
        return {"approved": True, "decided_by": who, "fingerprint": figures.get("fingerprint"),
                "accounts": figures.get("accounts"), "decision_id": decision_id}

    # --- the audit trail ---------------------------------------------------------------------
    def _record(self, context: Any, period: str | None, who: str, choice: str, outcome: str,
                reason: str | None, figures: dict[str, Any], suffix: str) -> int:
        return record_decision(context, "distribution_approval", who, choice, outcome, reason, figures, suffix,
                               period=period)


def record_decision(context: Any, kind: str, who: str, choice: str, outcome: str, reason: str | None,
                    figures: dict[str, Any], suffix: str, period: str | None = None,
                    request_ids: list[str] | None = None, account_ids: list[str] | None = None) -> int:
    """One row of the audit trail, committed at once (idempotent per task try and answer)."""
    from investment_jobs.db.connect import connect
    from investment_jobs.jobs import decisions

    ti = context["task_instance"]
    decision = decisions.Decision(
        key=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.id}/{suffix}", decided_by=who, dag_id=ti.dag_id,
        run_id=ti.run_id, task_id=ti.task_id, kind=kind, choice=choice, outcome=outcome, reason=reason,
        period=period, request_ids=request_ids or [], account_ids=account_ids or [], figures=figures)
    with connect() as conn:
        decision_id = decisions.record(conn, decision)
        conn.commit()
    log.info("decision %s recorded: %s %s by %s (%s)", decision_id, kind, choice, who, outcome)
    return decision_id


def refusal(who: str) -> str | None:
    """Why an answer from ``who`` does not count (``MONEY_APPROVERS``), or None when it does."""
    from investment_jobs import config

    approvers = config.money_approvers()
    if approvers and who not in approvers:
        return f"{who} is not in MONEY_APPROVERS ({', '.join(sorted(approvers))})"
    return None


def wait_again(deadline: str | None) -> bool:
    """Whether a question answered unusably may be asked again (its wait has time left)."""
    until = datetime.fromisoformat(deadline) if deadline else datetime.now(UTC)  # clock-ok
    return until > datetime.now(UTC)  # clock-ok: the wait's deadline


def park(deadline: datetime, **kwargs: Any) -> Any:
    """Wait (again) for an answer until ``deadline``: the task parks in AWAITING_INPUT."""
    from airflow.sdk.exceptions import TaskAwaitingInput

    remaining = max(deadline - datetime.now(UTC), timedelta(seconds=1))  # clock-ok: the wait's deadline
    raise TaskAwaitingInput(method_name="execute_complete", timeout=remaining,
                            kwargs={**kwargs, "deadline": deadline.isoformat()})


def announce_waiting(operator: HITLOperator, context: Any, deadline: datetime, **facts: Any) -> None:
    from investment_jobs.operations.alerts import announce, run_identity

    try:
        url = operator.generate_link_to_ui(task_instance=context["task_instance"])
    except ValueError:  # no api.base_url configured: the event still goes out
        url = None
    announce({"event": "approval_waiting", **run_identity(context), "task": operator.task_id,
              "subject": operator.subject, "respond_by": deadline.isoformat(timespec="seconds"), "url": url, **facts})


class WithdrawalReviewOperator(AskingOperator):
    """Ask a person about the withdrawals held for review (one page, one tick per request);
    approve → paid by ``pay_reviewed``, decline → rejected with the reason, nothing sent to Stripe.
    No answer within ``WITHDRAWAL_REVIEW_TIMEOUT``: they stay held, the next run asks again."""

    def __init__(self, **kwargs: Any) -> None:
        from investment_jobs import config
        from investment_jobs.jobs.withdrawals.review import LATER

        super().__init__(
            subject="Review the held withdrawals", options=[LATER], defaults=[LATER], multiple=True,
            params={"reason": Param("", type="string", title="Reason",
                                    description="Why (required to decline; the account holder sees it)")},
            response_timeout=config.withdrawal_review_timeout(),
            **{"retries": 0, **kwargs},
        )

    def execute(self, context: Any) -> dict[str, Any]:
        from investment_jobs import config
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.withdrawals import review

        with connect() as conn:
            held = review.pending(conn)
        if not held or config.operator_decisions() == "skip":
            return {"held": len(held), "approved": [], "declined": [], **(
                {"not_asked": "OPERATOR_DECISIONS=skip"} if held else {})}
        self.options = review.options(held)
        self.subject = f"Review {len(held)} held withdrawal(s) before they are paid"
        self.body = review.render(held)
        deadline = datetime.now(UTC) + self.response_timeout  # clock-ok: how long a person has to answer
        self._ask(context)
        announce_waiting(self, context, deadline, requests=len(held))
        return park(deadline, figures=review.figures(held), options=self.options)

    def execute_complete(self, context: Any, event: dict[str, Any], figures: dict[str, Any] | None = None,
                         options: list[str] | None = None, deadline: str | None = None) -> dict[str, Any]:
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.withdrawals import review

        held = (figures or {}).get("requests", [])
        ids = [h["withdrawal_request_id"] for h in held]
        accounts = sorted({h["account_id"] for h in held})
        who = _responder(event)
        if "error" in event or not who:
            record_decision(context, "withdrawal_review", "timeout", "no answer", "timed_out",
                            f"no answer within {self.response_timeout}; the requests stay held", figures or {},
                            "timeout", request_ids=ids, account_ids=accounts)
            return {"held": len(held), "approved": [], "declined": [], "timed_out": True}
        chosen = list(event.get("chosen_options") or [])
        reason = str((event.get("params_input") or {}).get("reason") or "").strip() or None
        answered = str(event.get("responded_at"))
        problem = refusal(who)
        outcome = "refused"
        if problem is None:
            try:
                approved, declined = review.read_answer(chosen, held)
            except review.ContradictoryAnswer as exc:
                problem, outcome = str(exc), "not_applied"
            else:
                if declined and not reason:
                    problem, outcome = "a decline needs a reason (the account holder sees it)", "not_applied"
        if problem is not None:
            record_decision(context, "withdrawal_review", who, ", ".join(chosen)[:200] or "none", outcome, problem,
                            figures or {}, f"{outcome}:{answered}", request_ids=ids, account_ids=accounts)
            log.warning("withdrawal review answered by %s not applied: %s; asking again", who, problem)
            if not wait_again(deadline):
                return {"held": len(held), "approved": [], "declined": [], "not_applied": problem}
            self.options = list(options or self.options)
            self._ask(context)
            return park(datetime.fromisoformat(deadline), figures=figures, options=self.options)  # type: ignore[arg-type]
        with connect() as conn:
            done = review.apply(conn, approved, declined, who, reason)
        by_id = {h["withdrawal_request_id"]: h for h in held}
        for choice, changed in (("approve", done["approved"]), ("decline", done["declined"])):
            for rid in changed:
                record_decision(context, "withdrawal_review", who, choice, "applied",
                                reason if choice == "decline" else reason, by_id[rid], f"answer:{answered}:{rid}",
                                request_ids=[rid], account_ids=[by_id[rid]["account_id"]])
        return {"held": len(held), "decided_by": who, **done}


class OperatorCaseOperator(AskingOperator):
    """One withdrawal that needs an operator: the facts, and the actions safe for its case
    (``jobs.withdrawals.operator_cases``), each checked against Stripe before it is carried out.
    Mapped over the run's open cases: one Required Action per request."""

    template_fields = ("request_id",)

    def __init__(self, *, request_id: Any, **kwargs: Any) -> None:
        from investment_jobs import config
        from investment_jobs.jobs.withdrawals.operator_cases import LATER

        super().__init__(
            subject="A withdrawal needs an operator", options=[LATER], defaults=[LATER],
            params={"payout_id": Param("", type="string", title="Payout id",
                                       description="For Mark completed: the paid payout (po_…) Stripe shows"),
                    "reason": Param("", type="string", title="Reason", description="Recorded with the decision")},
            response_timeout=config.operator_case_timeout(),
            **{"retries": 0, **kwargs},
        )
        self.request_id = request_id

    def execute(self, context: Any) -> dict[str, Any]:
        from investment_jobs import config
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.withdrawals import operator_cases

        with connect() as conn:
            case = operator_cases.case_of(conn, self.request_id)
        if case is None:
            return {"withdrawal_request_id": self.request_id, "result": "no longer needs an operator"}
        if config.operator_decisions() == "skip":
            return {"withdrawal_request_id": self.request_id, "result": "not asked (OPERATOR_DECISIONS=skip)"}
        self.options = case.options()
        self.subject = f"Withdrawal {case.amount} {case.currency} needs an operator ({case.case})"
        self.body = operator_cases.render(case)
        deadline = datetime.now(UTC) + self.response_timeout  # clock-ok: how long a person has to answer
        self._ask(context)
        announce_waiting(self, context, deadline, withdrawal_request_id=case.request_id, case=case.case)
        return park(deadline, case=case.facts(), options=self.options)

    def execute_complete(self, context: Any, event: dict[str, Any], case: dict[str, Any] | None = None,
                         options: list[str] | None = None, deadline: str | None = None) -> dict[str, Any]:
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs.withdrawals import operator_cases as cases
        from investment_jobs.stripe.hook import StripeHook

        facts = case or {}
        rid = facts.get("withdrawal_request_id", self.request_id)
        subject = {"request_ids": [rid], "account_ids": [facts["account_id"]] if facts.get("account_id") else []}
        who = _responder(event)
        if "error" in event or not who:
            record_decision(context, "withdrawal_operator_case", "timeout", "no answer", "timed_out",
                            f"no answer within {self.response_timeout}; left for the next run", facts, "timeout",
                            **subject)
            return {"withdrawal_request_id": rid, "result": "no answer: left for the next run"}
        choice = (list(event.get("chosen_options") or []) or [cases.LATER])[0]
        params = event.get("params_input") or {}
        reason = str(params.get("reason") or "").strip() or None
        answered = str(event.get("responded_at"))
        if choice not in (options or self.options):
            raise ValueError(f"the answer {choice!r} is not one of {options}")
        if (problem := refusal(who)) is not None:
            record_decision(context, "withdrawal_operator_case", who, choice, "refused", problem, facts,
                            f"refused:{answered}", **subject)
            if wait_again(deadline):
                self.options = list(options or self.options)
                self._ask(context)
                return park(datetime.fromisoformat(deadline), case=case, options=self.options)  # type: ignore[arg-type]
            return {"withdrawal_request_id": rid, "result": f"refused: {problem}"}
        if choice == cases.LATER:
            record_decision(context, "withdrawal_operator_case", who, choice, "applied", reason, facts,
                            f"answer:{answered}", **subject)
            return {"withdrawal_request_id": rid, "action": choice, "result": "left as it is", "decided_by": who}
        with connect() as conn:
            current = cases.case_of(conn, rid)
            try:
                if current is None:
                    raise cases.ActionRefused("the request no longer needs an operator (another run or answer "
                                              "changed it)")
                if choice == cases.RETRY:
                    result = cases.retry(conn, current)
                elif choice == cases.MARK_FAILED:
                    result = cases.mark_failed(conn, StripeHook().get_conn(), current, who, reason)
                else:
                    result = cases.mark_completed(conn, StripeHook().get_conn(), current,
                                                  str(params.get("payout_id") or ""))
            except cases.ActionRefused as exc:
                record_decision(context, "withdrawal_operator_case", who, choice, "not_applied", str(exc), facts,
                                f"answer:{answered}", **subject)
                log.warning("withdrawal %s: %s refused: %s", rid, choice, exc)
                return {"withdrawal_request_id": rid, "action": choice, "result": f"not applied: {exc}",
                        "decided_by": who}
        record_decision(context, "withdrawal_operator_case", who, choice, "applied",
                        reason or (f"payout {params.get('payout_id')}" if choice == cases.MARK_COMPLETED else None),
                        facts, f"answer:{answered}", **subject)
        return {"withdrawal_request_id": rid, "action": choice, "result": result, "decided_by": who}


class DriftDecisionOperator(AskingOperator):
    """A distributed month whose stored days drifted: post correcting adjustments, or acknowledge
    and leave it (``jobs.monthly_drift``). No answer within ``DRIFT_DECISION_TIMEOUT``, or *Decide
    later*: nothing changes and the run fails listing the drift, as before."""

    template_fields = ("assessment",)

    def __init__(self, *, assessment: Any, **kwargs: Any) -> None:
        from investment_jobs import config
        from investment_jobs.jobs.monthly_drift import ACKNOWLEDGE, LATER, POST

        super().__init__(
            subject="A distributed month drifted", options=[LATER, POST, ACKNOWLEDGE], defaults=[LATER],
            params={"reason": Param("", type="string", title="Reason", description="Recorded with the decision")},
            response_timeout=config.drift_decision_timeout(),
            **{"retries": 0, **kwargs},
        )
        self.assessment = assessment

    def execute(self, context: Any) -> dict[str, Any]:
        from investment_jobs import config
        from investment_jobs.db.connect import connect
        from investment_jobs.db.staging import RunReference
        from investment_jobs.jobs import monthly_drift

        run = RunReference.from_xcom(self.assessment["run"])
        with connect() as conn:
            items = monthly_drift.proposals(conn, run)
        if not items:
            return {"drift": 0}
        if config.operator_decisions() == "skip":
            return {"drift": len(items), "not_asked": "OPERATOR_DECISIONS=skip"}
        self.subject = f"{run.key}: {len(items)} distributed account(s) drifted — correct or acknowledge"
        self.body = monthly_drift.render(items, run.key)
        deadline = datetime.now(UTC) + self.response_timeout  # clock-ok: how long a person has to answer
        self._ask(context)
        announce_waiting(self, context, deadline, period=run.key, accounts=len(items))
        return park(deadline, period=run.key, proposals=[p.facts() for p in items])

    def execute_complete(self, context: Any, event: dict[str, Any], period: str | None = None,
                         proposals: list[dict[str, Any]] | None = None, deadline: str | None = None
                         ) -> dict[str, Any]:
        from investment_jobs.db.connect import connect
        from investment_jobs.jobs import decisions, monthly_drift

        items = [monthly_drift.Proposal.from_facts(f) for f in proposals or []]
        figures = {"period": period, "proposals": proposals or []}
        accounts = [p.account_id for p in items]
        who = _responder(event)
        if "error" in event or not who:
            record_decision(context, "distribution_drift", "timeout", "no answer", "timed_out",
                            f"no answer within {self.response_timeout}; nothing changed", figures, "timeout",
                            period=period, account_ids=accounts)
            return {"drift": len(items), "decision": "no answer"}
        choice = (list(event.get("chosen_options") or []) or [monthly_drift.LATER])[0]
        reason = str((event.get("params_input") or {}).get("reason") or "").strip() or None
        answered = str(event.get("responded_at"))
        if choice not in self.options:
            raise ValueError(f"the answer {choice!r} is not one of {self.options}")
        if (problem := refusal(who)) is not None:
            record_decision(context, "distribution_drift", who, choice, "refused", problem, figures,
                            f"refused:{answered}", period=period, account_ids=accounts)
            if wait_again(deadline):
                self._ask(context)
                return park(datetime.fromisoformat(deadline), period=period, proposals=proposals)  # type: ignore[arg-type]
            return {"drift": len(items), "decision": f"refused: {problem}"}
        if choice == monthly_drift.LATER:
            record_decision(context, "distribution_drift", who, choice, "applied", reason, figures,
                            f"answer:{answered}", period=period, account_ids=accounts)
            return {"drift": len(items), "decision": choice, "decided_by": who}
        ti = context["task_instance"]
        decision = decisions.Decision(
            key=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.id}/answer:{answered}", decided_by=who, dag_id=ti.dag_id,
            run_id=ti.run_id, task_id=ti.task_id, kind="distribution_drift", choice=choice, outcome="applied",
            reason=reason, period=period, account_ids=accounts, figures=figures)
        with connect() as conn:
            done = monthly_drift.apply(conn, str(period), items, choice, decision)
        return {"drift": len(items), "decision": choice, "decided_by": who, **done}
