"""Errors the core raises that its callers (the API, the adapters) turn into "busy, retry".

They are raised by the store, but callers outside the core catch them by these names so
that nothing outside ``approvals`` has to reach into the store to handle them.
"""

from __future__ import annotations


class StoreBusyError(Exception):
    """The database stayed locked past the busy timeout; the caller should ask to retry."""


class ConcurrentUpdateError(Exception):
    """A conditional write found the row changed by someone else; retry the command."""
