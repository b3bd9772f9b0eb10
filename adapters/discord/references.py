"""Button and modal ``custom_id`` values: an opaque, versioned reference, never authority.

A ``custom_id`` says only what was clicked (approve, deny, deny with a reason) and which
request it is about. Who clicked comes from the interaction Discord delivers over our
gateway; whether that person may decide comes from the core; and the click is checked
against the message it arrived on before anything is counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_CUSTOM_ID = 100
"""Discord's limit on a component's or a modal's ``custom_id``."""

PREFIX = "so1"
"""Version 1 of the format: ``so1:<verb>:<request id>``; an "Approve for ..." button's verb
is ``g<seconds>``, the length of the grant it asks for (a wish the core checks), and the
confirmation modal of an approval adds the confirmation token: ``so1:c:<request id>:<token>``."""
GRANT_PREFIX = "g"
_GRANT_SECONDS = re.compile(r"[0-9]{1,9}")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")


class Verb(StrEnum):
    """What a reference asks for."""

    APPROVE = "a"
    DENY = "d"
    DENY_WITH_REASON = "r"
    """A button that opens the reason modal."""
    REASON_SUBMITTED = "m"
    """The reason modal itself (its submission denies)."""
    CONFIRM_SUBMITTED = "c"
    """The confirmation modal of an approval (its submission approves; it carries the
    person's confirmation token, which the core checks)."""


MODAL_VERBS = frozenset({Verb.REASON_SUBMITTED, Verb.CONFIRM_SUBMITTED})
"""The references modals carry (every other one is a button's)."""
_TOKEN = re.compile(r"[0-9a-z]{1,12}\.[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class Reference:
    verb: Verb
    request_id: str
    grant_seconds: int | None = None
    """An "Approve for ..." button (verb approve): the grant length it asks for."""
    token: str | None = None
    """The confirmation token a confirmation modal carries."""


def encode(
    verb: Verb, request_id: str, grant_seconds: int | None = None, token: str | None = None
) -> str:
    """The ``custom_id`` for ``verb`` on ``request_id``.

    Raises:
        ValueError: the id cannot be carried (not a request id signoff makes).
    """
    if not _REQUEST_ID.fullmatch(request_id):
        raise ValueError(f"request id {request_id!r} cannot be put in a custom_id")
    said = verb.value if grant_seconds is None else f"{GRANT_PREFIX}{grant_seconds}"
    custom_id = f"{PREFIX}:{said}:{request_id}"
    if (token is not None) != (verb is Verb.CONFIRM_SUBMITTED):
        raise ValueError("only the confirmation modal carries a token, and it always does")
    if token is not None:
        if not _TOKEN.fullmatch(token):
            raise ValueError(f"not a confirmation token: {token!r}")
        custom_id += f":{token}"
        if len(custom_id) > MAX_CUSTOM_ID:
            raise ValueError(f"the confirmation of {request_id!r} does not fit a custom_id")
    assert len(custom_id) <= MAX_CUSTOM_ID
    return custom_id


def decode(custom_id: object) -> Reference | None:
    """The reference in ``custom_id``, or ``None`` when it is not one of ours."""
    if not isinstance(custom_id, str) or len(custom_id) > MAX_CUSTOM_ID:
        return None
    parts = custom_id.split(":")
    if len(parts) not in (3, 4) or parts[0] != PREFIX:
        return None
    if not _REQUEST_ID.fullmatch(parts[2]):
        return None
    seconds = parts[1].removeprefix(GRANT_PREFIX)
    if seconds != parts[1] and _GRANT_SECONDS.fullmatch(seconds):
        if len(parts) != 3:
            return None
        return Reference(Verb.APPROVE, parts[2], grant_seconds=int(seconds))
    try:
        verb = Verb(parts[1])
    except ValueError:
        return None
    if verb is Verb.CONFIRM_SUBMITTED:
        if len(parts) != 4 or not _TOKEN.fullmatch(parts[3]):
            return None
        return Reference(verb, parts[2], token=parts[3])
    return Reference(verb, parts[2]) if len(parts) == 3 else None
