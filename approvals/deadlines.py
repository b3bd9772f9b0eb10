"""Deadline planning: what is due for a pending request at a given moment, and when next.

Pure functions over a request and "now". The sweeper applies what they return; because the
plan looks only at where the request stands and what time it is, a request that was overdue
for several steps during downtime gets one coalesced step, never one per missed step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from approvals.model import ApprovalRequest
from approvals.policy import TimeoutOutcome


@dataclass(frozen=True)
class Remind:
    """Remind the current level's approvers."""


@dataclass(frozen=True)
class Escalate:
    """Hand the request to ``to_level`` (possibly skipping levels whose time has passed)."""

    to_level: int


@dataclass(frozen=True)
class TimeOut:
    """The final deadline passed: resolve the request as the policy says."""

    outcome: TimeoutOutcome


DeadlineStep = Remind | Escalate | TimeOut


def plan_step(request: ApprovalRequest, now: datetime) -> DeadlineStep | None:
    """The one step due for ``request`` at ``now``, or ``None`` when nothing is due."""
    if request.status.is_final:
        return None
    if now >= request.deadline:
        return TimeOut(request.policy.on_timeout)
    starts = request.level_starts()
    reached = max(
        (i for i, start in enumerate(starts) if start <= now and start < request.deadline),
        default=0,
    )
    if reached > request.level:
        return Escalate(reached)
    if request.next_remind_at is not None and now >= request.next_remind_at:
        return Remind()
    return None


@dataclass(frozen=True)
class Schedule:
    """The times the sweeper must next look at a pending request."""

    next_remind_at: datetime | None
    next_due_at: datetime


def _horizon(request: ApprovalRequest, level: int) -> datetime:
    """When ``level`` ends: the next level's start, or the deadline, whichever is first."""
    starts = request.level_starts()
    if level + 1 < len(starts) and starts[level + 1] < request.deadline:
        return starts[level + 1]
    return request.deadline


def next_due(request: ApprovalRequest) -> datetime:
    """The next moment the sweeper must look at ``request`` as it is now scheduled."""
    horizon = _horizon(request, request.level)
    if request.next_remind_at is not None and request.next_remind_at < horizon:
        return request.next_remind_at
    return horizon


def schedule_after(request: ApprovalRequest, level: int, since: datetime) -> Schedule:
    """Plan the next reminder and due time for ``level``, counting reminders from ``since``.

    A reminder is only planned when it falls before the next escalation and the deadline:
    there is no point nudging people in the same instant the request moves on.
    """
    horizon = _horizon(request, level)
    remind_every = request.policy.levels[level].remind_every if request.policy.levels else None
    next_remind = None
    if remind_every is not None:
        moment = since + remind_every
        if moment < horizon:
            next_remind = moment
    return Schedule(
        next_remind_at=next_remind,
        next_due_at=min(horizon, next_remind) if next_remind else horizon,
    )
