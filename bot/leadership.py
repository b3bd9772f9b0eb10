"""Which process holds each singleton connection: one PostgreSQL advisory lock per platform.

Telegram long polling, the Discord gateway and Slack Socket Mode allow one connection per
bot token. When several signoff processes share a database, each such platform has a
session advisory lock with a stable 64-bit key (:func:`lock_key`); the process that holds
it opens that adapter's inbound connection, and the others try again every second. All of a
process's locks live on one dedicated connection, so when the process dies its connection
closes, PostgreSQL releases the locks, and another process takes over within a couple of
seconds.

Fail safe: when the lock connection is lost, or stops answering, while holding, the inbound
connections are closed at once, before anything else, and the locks are asked for again
only on a fresh connection. Two pollers must never run; a short gap is the lesser harm
(Telegram and Discord keep what happens meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from approvals.ports import SingletonInbound
from approvals.store.notify import (
    CONNECT_TIMEOUT,
    CONNECTION_ERRORS,
    MAX_BACKOFF,
    MIN_BACKOFF,
    close_quietly,
    open_dedicated_connection,
    probe,
    release_session_lock,
    try_session_lock,
)

log = logging.getLogger(__name__)

RETRY_INTERVAL = 1.0
"""Seconds between attempts to take the locks this process does not hold (and between
liveness probes of the lock connection while it holds them)."""
HELD = "held"
STANDBY = "standby"
LOCKS_PURPOSE = "singleton locks"


def lock_key(platform: str) -> int:
    """The advisory lock key for ``platform``: the same in every process and every version."""
    digest = hashlib.sha256(f"signoff singleton connection: {platform}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SingletonLocks:
    """Takes, holds and gives up the platform locks, starting and stopping inbound connections.

    Args:
        dsn: the PostgreSQL database (see :func:`approvals.store.notify.postgres_dsn`).
        adapters: the adapters whose inbound connection is a singleton, by platform.
        retry_interval: seconds between rounds of asking for the locks not held.
    """

    def __init__(
        self,
        dsn: str,
        adapters: Mapping[str, SingletonInbound],
        *,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self._dsn = dsn
        self._adapters = dict(adapters)
        self._retry_interval = retry_interval
        self._held: set[str] = set()
        self._first_round = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> frozenset[str]:
        """The platforms whose inbound connection this process runs now."""
        return frozenset(self._held)

    def status(self) -> dict[str, str]:
        """``held`` or ``standby`` for each singleton platform (shown by ``/readyz``)."""
        return {name: HELD if name in self._held else STANDBY for name in sorted(self._adapters)}

    async def start(self, *, wait: float = CONNECT_TIMEOUT) -> None:
        """Start competing for the locks; wait (up to ``wait`` s) for the first round.

        Never fails: without the database the process keeps trying in the background.
        """
        if self._task is not None or not self._adapters:
            return
        self._task = asyncio.create_task(self._run(), name="singleton-locks")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_round.wait(), wait)

    async def stop(self) -> None:
        """Close the inbound connections held, then release the locks (by disconnecting)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            try:
                connection = await open_dedicated_connection(self._dsn, LOCKS_PURPOSE)
            except CONNECTION_ERRORS as exc:
                log.warning("lock connection failed (%s); retrying in %.1f s", exc, backoff)
                self._first_round.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            try:
                await self._compete(connection)
            except CONNECTION_ERRORS as exc:
                log.warning("lock connection lost (%s)", exc)
            finally:
                # First stop the connections: the locks are gone (or about to be).
                await self._give_up_all()
                await close_quietly(connection)
            await asyncio.sleep(self._retry_interval)

    async def _compete(self, connection: Any) -> None:
        """Ask for the locks not held, once a round, until the connection is lost."""
        lost = asyncio.Event()

        def on_lost(_connection: Any) -> None:
            lost.set()

        connection.add_termination_listener(on_lost)
        while not lost.is_set():
            for platform in sorted(self._adapters):
                if platform not in self._held:
                    await self._try_lock(connection, platform)
                if lost.is_set():
                    break
            else:
                if self._held and len(self._held) == len(self._adapters):
                    # Holding everything: probe the connection instead. A session the server
                    # dropped without our hearing of it (a silent network) must not leave
                    # this process polling while another one takes the lock.
                    await probe(connection)
            self._first_round.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._retry_interval)
        log.warning("lock connection closed by the server")

    async def _try_lock(self, connection: Any, platform: str) -> None:
        key = lock_key(platform)
        if not await try_session_lock(connection, key):
            return
        self._held.add(platform)
        log.info("this process now holds the %s connection", platform)
        try:
            await self._adapters[platform].start_inbound()
        except Exception:
            log.exception("starting the %s connection failed; another process may try", platform)
            await self._give_up(platform)
            await release_session_lock(connection, key)

    async def _give_up_all(self) -> None:
        for platform in sorted(self._held):
            await self._give_up(platform)

    async def _give_up(self, platform: str) -> None:
        self._held.discard(platform)
        try:
            await self._adapters[platform].stop_inbound()
        except Exception:
            log.exception("stopping the %s connection failed", platform)
        else:
            log.info("this process no longer holds the %s connection", platform)
