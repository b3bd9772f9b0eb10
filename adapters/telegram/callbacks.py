"""Button references: the short, opaque ``callback_data`` a Telegram button carries.

A reference names a request and what the button does, never who may press it; a malicious
client can send any bytes, so every decoded reference is checked again on click.
Format: ``so1:<action>:<request id>`` (``so1`` is the format version); an "Approve for ..."
button's action is ``g<seconds>``, the length of the grant it asks for (a wish the core
checks against the policy). The two buttons of an approval's confirmation add one part:
``so1:c:<request id>:<confirmation token>`` (Confirm approve; the token, bound to the person
who pressed Approve, is checked by the core) and ``so1:x:<request id>:<user id>`` (Cancel,
for that person only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_CALLBACK_DATA_BYTES = 64
"""Telegram accepts 1-64 bytes of ``callback_data`` per button."""

CALLBACK_VERSION = "so1"

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EXTRA = {
    "c": re.compile(r"[0-9a-z]{1,12}\.[A-Za-z0-9_-]{1,40}"),
    "x": re.compile(r"[0-9]{1,20}"),
}
"""What the fourth part of a confirmation's buttons may look like: a token, a user id."""


class ButtonAction(StrEnum):
    APPROVE = "a"
    DENY = "d"
    DENY_WITH_REASON = "r"
    CONFIRM = "c"
    CANCEL = "x"


GRANT_PREFIX = "g"
"""The action of an "Approve for ..." button: ``g`` and the grant's length in seconds."""
_GRANT_SECONDS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class ButtonRef:
    """What a pressed button says: which request, which action, for a confirmation's
    buttons the token (Confirm approve) or the user it was shown to (Cancel), and for an
    "Approve for ..." button (an approval) the length of the grant it asks for."""

    action: ButtonAction
    request_id: str
    extra: str | None = None
    grant_seconds: int | None = None


def encode_button(ref: ButtonRef) -> str:
    """The ``callback_data`` for ``ref``.

    Raises:
        ValueError: the request id is not a plain id, or the data would exceed 64 bytes.
    """
    if not _REQUEST_ID.fullmatch(ref.request_id):
        raise ValueError(f"not a request id: {ref.request_id!r}")
    action = ref.action.value
    if ref.grant_seconds is not None:
        action = f"{GRANT_PREFIX}{ref.grant_seconds}"
    data = f"{CALLBACK_VERSION}:{action}:{ref.request_id}"
    if (ref.extra is not None) != (ref.action.value in _EXTRA):
        raise ValueError(f"button {ref.action.name} takes {'one' if ref.extra else 'no'} extra")
    if ref.extra is not None:
        if not _EXTRA[ref.action.value].fullmatch(ref.extra):
            raise ValueError(f"not a {ref.action.name} reference: {ref.extra!r}")
        data += f":{ref.extra}"
    if len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        raise ValueError(f"callback data for request {ref.request_id!r} exceeds 64 bytes")
    return data


def decode_button(data: str | None) -> ButtonRef | None:
    """The reference in ``data``, or ``None`` when it is malformed, oversized or unknown."""
    if not data or len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        return None
    parts = data.split(":")
    if len(parts) not in (3, 4) or parts[0] != CALLBACK_VERSION:
        return None
    if not _REQUEST_ID.fullmatch(parts[2]):
        return None
    seconds = parts[1].removeprefix(GRANT_PREFIX)
    if seconds != parts[1] and _GRANT_SECONDS.fullmatch(seconds):
        if len(parts) != 3:
            return None
        return ButtonRef(ButtonAction.APPROVE, parts[2], grant_seconds=int(seconds))
    try:
        action = ButtonAction(parts[1])
    except ValueError:
        return None
    extra_pattern = _EXTRA.get(action.value)
    if extra_pattern is None:
        return ButtonRef(action, parts[2]) if len(parts) == 3 else None
    if len(parts) != 4 or not extra_pattern.fullmatch(parts[3]):
        return None
    return ButtonRef(action, parts[2], parts[3])
