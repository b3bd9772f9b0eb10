"""Deadlines measure real elapsed time, even when the server's wall clock is stepped.

Deadlines are stored as aware UTC wall-clock times: that is what a card shows and what a
person reads. If the wall clock is stepped forward (set by hand, a VM restored from a
snapshot, a time server correcting a clock that ran behind), every deadline inside the step
would fall due at once: requests would time out, or be approved by ``on_timeout: approve``,
before their time had really passed. So the service compares the wall clock with a clock of
elapsed time at every sweep, vote and cancel (:class:`ClockStepWatch`). When the two part by
more than :data:`STEP_THRESHOLD`, the wall clock was stepped, and before anything else is
decided :func:`follow_step` moves, in one transaction:

- on a forward step, the times of every request pending from before the step (created,
  deadline, next reminder, next due time) forward by the step, so each keeps the real time
  it had left; its card shows the new deadline from its next edit on;
- either way, the retry and lease times of queued messages and each destination's "not
  before", so a backward step does not freeze deliveries for the length of the step.

A backward step leaves request deadlines alone: they then fall due late by at most the
step, never early (requests made after a backward step cannot be told apart by their times
from those made before it). A step that happens while signoff is stopped cannot be seen.

Several processes may share a PostgreSQL database and all see the same step; the first to
follow it writes a ``clock_stepped`` audit entry, and the others find that entry and move
nothing again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from approvals.audit import AuditKind
from approvals.clock import ElapsedClock
from approvals.store import WriteTx, housekeeping

STEP_THRESHOLD = timedelta(seconds=2)
"""A smaller difference between wall and elapsed time is clock drift, not a step."""


@dataclass(frozen=True)
class ClockStep:
    """The wall clock moved by ``size`` more (or less, when negative) than time passed.

    Attributes:
        size: wall-clock movement minus elapsed time; positive for a forward step.
        before: the wall time of the last look before the step (on the old clock).
        after: the wall time of the first look after it (on the new clock).
        elapsed_after: the elapsed-time clock at that look.
    """

    size: timedelta
    before: datetime
    after: datetime
    elapsed_after: float


class ClockStepWatch:
    """Notices steps of the wall clock by comparing it with elapsed time between looks."""

    def __init__(self, clock: ElapsedClock, *, threshold: timedelta = STEP_THRESHOLD) -> None:
        self._clock = clock
        self._threshold = threshold
        self._wall = clock.now()
        self._elapsed = clock.elapsed()

    def look(self) -> ClockStep | None:
        """The step since the last look, if there was one (it stays reported until
        :meth:`followed`); without one, the look becomes the new reference point."""
        wall, elapsed = self._clock.now(), self._clock.elapsed()
        size = (wall - self._wall) - timedelta(seconds=elapsed - self._elapsed)
        if abs(size) < self._threshold:
            self._wall, self._elapsed = wall, elapsed
            return None
        return ClockStep(size=size, before=self._wall, after=wall, elapsed_after=elapsed)

    def followed(self, step: ClockStep) -> None:
        """``step`` has been applied to the stored times; look on from its far side."""
        self._wall, self._elapsed = step.after, step.elapsed_after


def follow_step(tx: WriteTx, step: ClockStep) -> int | None:
    """Move stored times by ``step`` (see the module docstring), once across processes.

    Returns how many pending requests were moved, or ``None`` when another process had
    already followed the same step.
    """
    # The audit head's row lock orders this against every other process's appends, so two
    # processes cannot both miss each other's entry.
    tx.lock_audit_chain()
    last = housekeeping.latest_audit_data(tx, AuditKind.CLOCK_STEPPED.value)
    if last is not None and _same_step(json.loads(last), step):
        return None
    moved = _move_pending_requests(tx, step) if step.size > timedelta(0) else 0
    _move_queued_messages(tx, step.size)
    tx.append_audit(
        AuditKind.CLOCK_STEPPED,
        at=step.after,
        actor="signoff",
        data={
            "step_seconds": round(step.size.total_seconds(), 3),
            "seen_before": step.before.isoformat(),
            "seen_after": step.after.isoformat(),
            "requests_moved": moved,
        },
    )
    return moved


def _same_step(recorded: dict[str, Any], step: ClockStep) -> bool:
    """Whether an audited step is ``step`` as another process saw it: about the same size,
    and the two processes' before-and-after windows overlap (on the new clock)."""
    try:
        size = timedelta(seconds=float(recorded["step_seconds"]))
        before = datetime.fromisoformat(str(recorded["seen_before"]))
        after = datetime.fromisoformat(str(recorded["seen_after"]))
    except (KeyError, TypeError, ValueError):
        return False
    if abs(size - step.size) >= STEP_THRESHOLD:
        return False
    latest_start = max(before + size, step.before + step.size)
    earliest_end = min(after, step.after)
    return latest_start <= earliest_end + STEP_THRESHOLD


def _move_pending_requests(tx: WriteTx, step: ClockStep) -> int:
    """Move the times of requests pending from before a forward step; bump their version,
    so that a transaction that read one before the move cannot write its old times back."""
    # Anything made since the step carries a time of the new clock, no earlier than the
    # step's earliest possible moment on it (``before + size``); what was made before the
    # step carries an earlier one. (A request made before an earlier backward step may carry
    # a later time and stay unmoved: that backward step already made it late by more.)
    made_before = step.before + step.size
    return housekeeping.move_pending_requests(tx, created_before=made_before, by=step.size)


def _move_queued_messages(tx: WriteTx, size: timedelta) -> None:
    """Keep retry delays, leases and "not before" pauses as long in real time as planned."""
    housekeeping.move_pending_messages(tx, size)
    housekeeping.move_destination_pauses(tx, size)
