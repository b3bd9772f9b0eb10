"""Which request a log line is about: a context variable the core sets and log formatters read.

The service sets it while it works on one request (a vote, a cancel, a deadline step), and
the outbox while it delivers one row, so every line logged meanwhile, by signoff or by a
platform library it calls, can carry the request id. A log call outside such a block may
pass ``extra={"request_id": ...}`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_request_id: ContextVar[str | None] = ContextVar("signoff_request_id", default=None)
"""The id of the request being worked on in this task, if any."""


@contextmanager
def about_request(request_id: str | None) -> Iterator[None]:
    """Tag log lines with ``request_id`` for the duration of the block (this task only)."""
    token = current_request_id.set(request_id)
    try:
        yield
    finally:
        current_request_id.reset(token)
