"""Test-only crash points: a process that kills itself (SIGKILL) at one named risky moment.

The crash tests (``tests/reliability``) start ``signoff serve`` with the environment
variable ``SIGNOFF_CRASH_AT`` set to one :class:`CrashPoint` value, optionally followed by
``@N`` to crash the N-th time the point is reached (default: the first). When the process
gets there it sends itself SIGKILL: no cleanup, no commit, no flush, exactly like ``kill -9``
or a power cut at that instant. The tests then restart it without the variable and check
that nothing was lost or doubled.

The variable is read once, when this module is first imported; it cannot be set through the
config file or the API, and without it :func:`crash_point` is a function that does nothing.
Never set it outside tests.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from enum import StrEnum

CRASH_AT_ENV = "SIGNOFF_CRASH_AT"


class CrashPoint(StrEnum):
    """The risky moments, named where the code reaches them."""

    AFTER_CREATE_COMMIT = "after-create-commit"
    """A new request is committed (with its outbox rows); the agent has no answer yet."""
    AFTER_SEND_BEFORE_REF = "after-send-before-ref"
    """A card was posted on the platform; its message reference is not stored yet."""
    DURING_DECISION = "during-decision"
    """A vote's transaction has written everything but has not committed."""
    AFTER_DECISION_BEFORE_EDIT = "after-decision-before-edit"
    """A decision is committed; no card has been edited yet."""
    DURING_SWEEP = "during-sweep"
    """The deadline sweep applied its steps but has not committed."""
    DURING_ESCALATION = "during-escalation"
    """An escalation is written (level and audit entry) but not its new cards, nor committed."""


def _ignore(point: CrashPoint) -> None:
    """The crash point of every normal run: nothing at all."""


def _armed(setting: str) -> Callable[[CrashPoint], None]:
    """A crash point that kills the process the N-th time it reaches the named point."""
    name, _, nth = setting.partition("@")
    try:
        target = CrashPoint(name.strip())
    except ValueError:
        known = ", ".join(point.value for point in CrashPoint)
        raise ValueError(f"{CRASH_AT_ENV}={setting!r} names no crash point ({known})") from None
    remaining = int(nth) if nth else 1
    if remaining < 1:
        raise ValueError(f"{CRASH_AT_ENV}={setting!r}: the count after @ must be 1 or more")

    def crash_point(point: CrashPoint) -> None:
        nonlocal remaining
        if point is not target:
            return
        remaining -= 1
        if remaining == 0:
            sys.stderr.write(f"signoff: crash point {point.value} reached; killing myself\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    return crash_point


_SETTING = os.environ.get(CRASH_AT_ENV, "").strip()

crash_point: Callable[[CrashPoint], None] = _armed(_SETTING) if _SETTING else _ignore
"""Call at a risky moment; kills the process only when the tests armed this point."""
