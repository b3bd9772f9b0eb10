"""Waiting on a condition with a deadline: how tests synchronize, instead of fixed sleeps.

``wait_for`` polls an async predicate in a test's event loop; ``wait_until`` polls a plain
one, for tests that drive other processes from a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], Awaitable[T | None]], *, within: float = 10.0, poll: float = 0.02
) -> T:
    """Poll an async predicate until it returns something truthy, and return that (so never
    ``None``); fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(poll)


def wait_until(
    predicate: Callable[[], object],
    *,
    within: float = 20.0,
    poll: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it returns something truthy; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {within} s"
        time.sleep(poll)
