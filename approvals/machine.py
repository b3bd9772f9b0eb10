"""The request state machine, as one table of legal (status, event) -> status transitions."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Where a request stands. Everything but ``pending`` is final."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self is not Status.PENDING


class Event(StrEnum):
    """Something that happens to a request."""

    VOTE = "vote"  # a counted approval that does not yet complete the quorum
    APPROVE = "approve"  # quorum reached, auto-approval, or on_timeout: approve
    DENY = "deny"  # an approver denied, auto-denial, or on_timeout: deny
    EXPIRE = "expire"  # on_timeout: expire
    CANCEL = "cancel"  # the requesting agent withdrew the request
    REMIND = "remind"  # nudge the current level again
    ESCALATE = "escalate"  # hand the request to a later level


TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.PENDING, Event.VOTE): Status.PENDING,
    (Status.PENDING, Event.REMIND): Status.PENDING,
    (Status.PENDING, Event.ESCALATE): Status.PENDING,
    (Status.PENDING, Event.APPROVE): Status.APPROVED,
    (Status.PENDING, Event.DENY): Status.DENIED,
    (Status.PENDING, Event.EXPIRE): Status.EXPIRED,
    (Status.PENDING, Event.CANCEL): Status.CANCELLED,
}
"""Every legal transition. A pair that is missing is illegal; final states have no exits."""


class IllegalTransitionError(Exception):
    """An event was applied to a status that does not accept it (a bug in the caller)."""

    def __init__(self, status: Status, event: Event) -> None:
        super().__init__(f"event {event.value!r} is not allowed in status {status.value!r}")
        self.status = status
        self.event = event


def next_status(status: Status, event: Event) -> Status:
    """Return the status after ``event``; raise :class:`IllegalTransitionError` if illegal."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransitionError(status, event) from None
