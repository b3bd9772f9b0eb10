"""Deadline planning: which single step is due, and when the next one is."""

from dataclasses import replace
from datetime import timedelta

from approvals.clock import ManualClock
from approvals.deadlines import Escalate, Remind, TimeOut, next_due, plan_step, schedule_after
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.policy import TimeoutOutcome
from tests.world import make_policies

PROD = make_policies().policies[2]  # 15 min level (remind 5 min), then 1 h level
T0 = ManualClock().now()
MIN = timedelta(minutes=1)


def pending(**changes) -> ApprovalRequest:
    request = ApprovalRequest(
        id="r1",
        agent="bot",
        action="db.migrate",
        title="t",
        details="",
        params={},
        payload_sha256="0" * 64,
        requested_by=None,
        policy=PROD,
        status=Status.PENDING,
        level=0,
        created_at=T0,
        deadline=T0 + PROD.total_timeout,
        next_due_at=None,
        next_remind_at=None,
    )
    plan = schedule_after(request, 0, T0)
    request = replace(request, next_due_at=plan.next_due_at, next_remind_at=plan.next_remind_at)
    return replace(request, **changes)


def test_first_reminder_is_due_after_remind_every():
    request = pending()
    assert request.next_remind_at == T0 + 5 * MIN
    assert request.next_due_at == T0 + 5 * MIN
    assert plan_step(request, T0 + 5 * MIN - timedelta(microseconds=1)) is None
    assert plan_step(request, T0 + 5 * MIN) == Remind()


def test_no_reminder_is_planned_at_or_after_the_escalation():
    request = pending()
    plan = schedule_after(request, 0, T0 + 10 * MIN)
    assert plan.next_remind_at is None
    assert plan.next_due_at == T0 + 15 * MIN


def test_escalation_is_due_at_the_level_timeout():
    assert plan_step(pending(), T0 + 15 * MIN) == Escalate(1)


def test_last_level_runs_to_the_deadline():
    request = pending(level=1)
    plan = schedule_after(request, 1, T0 + 15 * MIN)
    assert plan == type(plan)(next_remind_at=None, next_due_at=T0 + 75 * MIN)
    assert plan_step(request, T0 + 75 * MIN) == TimeOut(TimeoutOutcome.DENY)


def test_long_downtime_coalesces_into_the_final_step():
    # Reminders, an escalation and the deadline all passed: only the timeout applies.
    assert plan_step(pending(), T0 + timedelta(days=1)) == TimeOut(TimeoutOutcome.DENY)


def test_downtime_past_one_level_escalates_once_to_the_right_level():
    assert plan_step(pending(), T0 + 20 * MIN) == Escalate(1)


def test_short_agent_deadline_cuts_levels():
    request = pending(deadline=T0 + 10 * MIN)
    assert plan_step(request, T0 + 10 * MIN) == TimeOut(TimeoutOutcome.DENY)
    assert schedule_after(request, 0, T0 + 6 * MIN).next_due_at == T0 + 10 * MIN


def test_next_due_is_the_earliest_of_reminder_escalation_and_deadline():
    assert next_due(pending()) == T0 + 5 * MIN
    assert next_due(pending(next_remind_at=None)) == T0 + 15 * MIN
    assert next_due(pending(level=1, next_remind_at=None)) == T0 + 75 * MIN


def test_final_requests_have_nothing_due():
    assert plan_step(pending(status=Status.APPROVED), T0 + timedelta(days=9)) is None
