"""Button values: an opaque, versioned reference to a request, never authority.

A value says only which request a button is about. Who clicked, and whether that person
may decide, come from Slack's signed payload and the core; the value is checked against
the message it arrived on before anything is counted.
"""

from __future__ import annotations

import re

MAX_BUTTON_VALUE = 2000
"""Slack's limit on a button's ``value``."""
MAX_ACTION_ID = 255
"""Slack's limit on an ``action_id``."""

VALUE_PREFIX = "so1:"
"""Version 1 of the reference format: ``so1:<request id>``."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")


def encode_value(request_id: str) -> str:
    """The button value for ``request_id``.

    Raises:
        ValueError: the id cannot be carried (not a request id signoff makes).
    """
    if not _REQUEST_ID.fullmatch(request_id):
        raise ValueError(f"request id {request_id!r} cannot be put in a button value")
    value = VALUE_PREFIX + request_id
    assert len(value) <= MAX_BUTTON_VALUE
    return value


def decode_value(value: object) -> str | None:
    """The request id in a button value, or ``None`` when the value is not one of ours."""
    if not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE:
        return None
    if not value.startswith(VALUE_PREFIX):
        return None
    request_id = value.removeprefix(VALUE_PREFIX)
    return request_id if _REQUEST_ID.fullmatch(request_id) else None


GRANT_VALUE_PREFIX = "so1g:"
"""An "Approve for ..." option: ``so1g:<seconds>:<request id>``. The length is a wish the
core checks against the policy, like the request id it is never authority."""
MAX_OPTION_VALUE = 150
"""Slack's limit on a select option's ``value``."""


def encode_grant_value(request_id: str, seconds: int) -> str:
    """The select option value of "Approve for ``seconds``" on ``request_id``'s card."""
    value = f"{GRANT_VALUE_PREFIX}{seconds}:{decode_value(encode_value(request_id))}"
    assert len(value) <= MAX_OPTION_VALUE
    return value


def decode_grant_value(value: object) -> tuple[str, int] | None:
    """``(request id, seconds)`` from an "Approve for ..." option value, or ``None`` when
    the value is not one of ours."""
    if not isinstance(value, str) or not value.startswith(GRANT_VALUE_PREFIX):
        return None
    seconds, _, request_id = value.removeprefix(GRANT_VALUE_PREFIX).partition(":")
    if not (seconds.isascii() and seconds.isdigit() and len(seconds) <= 9):
        return None
    if not _REQUEST_ID.fullmatch(request_id):
        return None
    return request_id, int(seconds)
