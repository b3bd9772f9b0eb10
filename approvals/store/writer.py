"""The one writer: every state change of this process, batched into shared commits.

Callers hand the writer a *command*, a synchronous function of a
:class:`~approvals.store.transaction.WriteTx`, and await its result. The writer takes every
command waiting in its queue and runs them one after another inside one database
transaction, with one commit (one fsync) for the whole batch, and answers each caller only
after that commit: a durable service reaches the speed of its disk because the cost of a
commit is shared by everything in the batch.

A command that raises does not fail its neighbours: the batch is rolled back and run again
with a savepoint around each command, so only the failing one gets its exception (the
savepoints cost nothing on the common path, where every command succeeds). Begin and commit
failures (a database locked by another process past the busy timeout, a lost connection)
fail the whole batch, each caller with the same error.

Where a batch runs is the backend's business (:mod:`approvals.store.database`): on SQLite
in the writer's own thread on its own connection, one hand-off per batch; on PostgreSQL as
one transaction on one pooled connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from approvals.store.transaction import WriteTx

log = logging.getLogger(__name__)

T = TypeVar("T")
Command = Callable[[WriteTx], T]
"""A unit of work for the writer: reads and writes through the transaction, returns a value."""

MAX_BATCH = 512
"""Commands per transaction at most; more waiting ones go into the next batch."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one command of a batch came to: its value, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None


class _BatchFrameError(Exception):
    """Beginning, flushing or committing the batch failed, not one of its commands."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class BatchResult:
    """What a batch came to: each command's outcome, in order, and how many outbox rows the
    committed commands added."""

    outcomes: list[Outcome[Any]]
    messages_queued: int = 0


def run_batch(conn: Connection, commands: Sequence[Command[Any]]) -> BatchResult:
    """Run ``commands`` in one transaction on ``conn`` (synchronously) and commit once.

    Every exception a command raises comes back as its :class:`Outcome`; an error of the
    transaction itself comes back for every command.
    """
    try:
        if len(commands) == 1:
            return _run_alone(conn, commands[0])
        try:
            return _run_together(conn, commands)
        except _CommandFailed:
            return _run_each_in_a_savepoint(conn, commands)
    except _BatchFrameError as failure:
        return BatchResult([Outcome(error=failure.cause) for _ in commands])


class _CommandFailed(Exception):
    """One command of a batch raised; the batch was rolled back."""


def _begin(conn: Connection) -> Any:
    try:
        return conn.begin()
    except Exception as exc:
        raise _BatchFrameError(exc) from exc


def _commit(tx: WriteTx, transaction: Any) -> None:
    try:
        tx.flush()
        transaction.commit()
    except Exception as exc:
        transaction.rollback()
        raise _BatchFrameError(exc) from exc


def _run_alone(conn: Connection, command: Command[Any]) -> BatchResult:
    transaction = _begin(conn)
    tx = WriteTx(conn)
    try:
        value = command(tx)
    except Exception as exc:
        transaction.rollback()
        return BatchResult([Outcome(error=exc)])
    except BaseException:
        transaction.rollback()
        raise
    _commit(tx, transaction)
    return BatchResult([Outcome(value=value)], tx.messages_queued)


def _run_together(conn: Connection, commands: Sequence[Command[Any]]) -> BatchResult:
    transaction = _begin(conn)
    tx = WriteTx(conn)
    try:
        values = [command(tx) for command in commands]
    except Exception as exc:
        transaction.rollback()
        raise _CommandFailed() from exc
    except BaseException:
        transaction.rollback()
        raise
    _commit(tx, transaction)
    return BatchResult([Outcome(value=value) for value in values], tx.messages_queued)


def _run_each_in_a_savepoint(conn: Connection, commands: Sequence[Command[Any]]) -> BatchResult:
    transaction = _begin(conn)
    tx = WriteTx(conn)
    outcomes: list[Outcome[Any]] = []
    try:
        for command in commands:
            try:
                with tx.savepoint():
                    outcomes.append(Outcome(value=command(tx)))
            except Exception as exc:
                outcomes.append(Outcome(error=exc))
    except BaseException:
        transaction.rollback()
        raise
    _commit(tx, transaction)
    return BatchResult(outcomes, tx.messages_queued)


BatchRunner = Callable[[Sequence[Command[Any]]], Awaitable[BatchResult]]
"""Runs one batch where the backend runs batches (a thread, or a pooled connection)."""


class Writer:
    """The queue in front of the database: one batch in flight at a time, per process."""

    def __init__(self, run: BatchRunner) -> None:
        self._run = run
        self._queue: deque[tuple[Command[Any], asyncio.Future[Any]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._message_listeners: list[Callable[[], None]] = []
        self.batches = 0
        self.commands = 0

    def on_messages_queued(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each commit that added outbox rows (wakes the dispatcher)."""
        self._message_listeners.append(listener)

    def remove_messages_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._message_listeners:
            self._message_listeners.remove(listener)

    async def submit(self, command: Command[T]) -> T:
        """Queue ``command`` and return its value once its batch has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((command, future))
        drainer = self._drainer
        if drainer is None or drainer.done() or drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain(), name="signoff-writer")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch: list[tuple[Command[Any], asyncio.Future[Any]]] = []
            while self._queue and len(batch) < MAX_BATCH:
                command, future = self._queue.popleft()
                if not future.done():  # a caller that gave up before its turn is skipped
                    batch.append((command, future))
            if not batch:
                continue
            try:
                result = await self._run([command for command, _ in batch])
            except BaseException as exc:
                for _command, future in batch:
                    _settle(future, Outcome(error=exc))
                if not isinstance(exc, Exception):
                    raise
                continue
            self.batches += 1
            self.commands += len(batch)
            for (_command, future), outcome in zip(batch, result.outcomes, strict=True):
                _settle(future, outcome)
            if result.messages_queued:
                for listener in list(self._message_listeners):
                    try:
                        listener()
                    except Exception:
                        log.exception("an outbox listener failed")


def _settle(future: asyncio.Future[Any], outcome: Outcome[Any]) -> None:
    """Hand a caller its command's outcome, on the caller's own event loop (a store may be
    shared by loops in several threads; a future must be resolved in its own)."""
    if future.get_loop() is not asyncio.get_running_loop():
        future.get_loop().call_soon_threadsafe(_settle_here, future, outcome)
    else:
        _settle_here(future, outcome)


def _settle_here(future: asyncio.Future[Any], outcome: Outcome[Any]) -> None:
    if future.done():
        return  # the caller gave up waiting
    if isinstance(outcome.error, asyncio.CancelledError):
        future.cancel()  # the writer itself was cancelled (its event loop is closing)
    elif outcome.error is not None:
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome.value)
