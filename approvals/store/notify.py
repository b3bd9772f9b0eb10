"""Cross-process wake-ups on PostgreSQL: the LISTEN/NOTIFY channel and one listener per process.

A transaction that makes a request final calls ``pg_notify`` on
:data:`REQUEST_FINAL_CHANNEL`. PostgreSQL delivers a notification only when (and if) that
transaction commits, so nobody is woken for a change that rolled back, and a woken reader
always finds the change committed. Each process holds one dedicated connection that
LISTENs (:class:`NotificationListener`) and turns what arrives into local wake-ups.

Notifications are hints, never the source of truth: whoever is woken reads the store. While
the listener is disconnected nothing is lost for good, only slower: waiters fall back to a
short periodic re-check, and after reconnecting the listener tells its owner to re-check
everything once (notifications sent during the gap are gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

REQUEST_FINAL_CHANNEL = "signoff_request_final"
"""Payload: the id of a request that has just become final. (Outbox rows need no such
wake-up: the process that queues a row wakes its own dispatcher, and every dispatcher
looks at the outbox at least twice a second.)"""

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a dedicated connection to open."""
LIVENESS_INTERVAL = 5.0
"""Seconds between liveness probes on an idle dedicated connection."""
LIVENESS_TIMEOUT = 3.0
"""Seconds a liveness probe may take before the connection counts as lost."""
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
"""Reconnect delays: doubled after each failed attempt, between these bounds (seconds)."""

SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
"""Ask the server to notice a vanished client within about 25 s (a crashed host sends no
FIN), so that the advisory locks and listeners of a dead process are released promptly."""

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
"""What a dedicated connection raises when the server or the network goes away."""

LISTENER_PURPOSE = "listener"

NotificationHandler = Callable[[str], None]
"""Called with a notification's payload."""


def postgres_dsn(url: str) -> str:
    """The config's database URL as a plain ``postgresql://`` DSN that asyncpg accepts.

    Raises:
        ValueError: the URL is not a PostgreSQL URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql://{rest}"


async def open_dedicated_connection(dsn: str, purpose: str) -> Any:
    """A connection of its own, outside the store's pool, for LISTEN or session locks.

    ``purpose`` becomes its ``application_name`` (``signoff <purpose>``), so that operators
    can tell it apart in ``pg_stat_activity``.
    """
    settings = {**SERVER_KEEPALIVES, "application_name": f"signoff {purpose}"}
    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, server_settings=settings)


async def close_quietly(connection: Any) -> None:
    """Close a dedicated connection; a broken one is dropped without waiting."""
    try:
        await asyncio.wait_for(connection.close(), timeout=1.0)
    except CONNECTION_ERRORS:
        connection.terminate()


class NotificationListener:
    """One dedicated connection LISTENing on some channels, reconnected with backoff.

    Args:
        dsn: where to connect (see :func:`postgres_dsn`).
        handlers: the channels to LISTEN on, each with its handler.
        on_listening: called each time the listener is (re)connected and LISTENing; after a
            reconnect its owner should re-check whatever a missed notification would have
            told it.
    """

    def __init__(
        self,
        dsn: str,
        handlers: Mapping[str, NotificationHandler],
        *,
        on_listening: Callable[[], None] | None = None,
        liveness_interval: float = LIVENESS_INTERVAL,
    ) -> None:
        self._dsn = dsn
        self._handlers = dict(handlers)
        self._on_listening = on_listening
        self._liveness_interval = liveness_interval
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0
        """How many times the connection was lost and opened again."""

    @property
    def listening(self) -> bool:
        """Whether notifications are being received right now."""
        return self._listening.is_set()

    async def start(self, *, wait: float = CONNECT_TIMEOUT) -> None:
        """Start listening in the background; wait up to ``wait`` seconds for the first LISTEN.

        Never fails: when the database cannot be reached the listener keeps trying.
        """
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="notification-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        connected_before = False
        while True:
            try:
                connection = await open_dedicated_connection(self._dsn, LISTENER_PURPOSE)
            except CONNECTION_ERRORS as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            if connected_before:
                self.reconnects += 1
            connected_before = True
            try:
                await self._listen(connection)
            except CONNECTION_ERRORS as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self._listening.clear()
                await close_quietly(connection)
            await asyncio.sleep(backoff)

    async def _listen(self, connection: Any) -> None:
        """LISTEN, then probe the idle connection until it is lost."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        for channel in self._handlers:
            await connection.add_listener(channel, self._dispatch)
        self._listening.set()
        log.info("listening for changes on %s", ", ".join(sorted(self._handlers)))
        if self._on_listening is not None:
            self._on_listening()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._liveness_interval)
            if not lost.is_set():
                # A silent network can leave a dead connection looking alive: ask it.
                await probe(connection)
        log.warning("LISTEN connection closed by the server; reconnecting")

    def _dispatch(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return
        try:
            handler(payload)
        except Exception:
            log.exception("handling a notification on %s failed", channel)


async def probe(connection: Any) -> None:
    """Ask a dedicated connection something trivial: a session the server dropped without
    our hearing of it fails here instead of looking idle."""
    await connection.execute("SELECT 1", timeout=LIVENESS_TIMEOUT)


async def try_session_lock(connection: Any, key: int) -> bool:
    """Take the session-level advisory lock ``key`` if nobody holds it; never waits."""
    return bool(
        await connection.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=LIVENESS_TIMEOUT)
    )


async def release_session_lock(connection: Any, key: int) -> None:
    """Give back the session-level advisory lock ``key``."""
    await connection.fetchval("SELECT pg_advisory_unlock($1)", key, timeout=LIVENESS_TIMEOUT)
