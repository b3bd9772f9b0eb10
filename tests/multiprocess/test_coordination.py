"""The two pieces several processes coordinate with, on a real PostgreSQL server.

Notifications: sent on commit only, received by a dedicated listener that reconnects after
its connection is killed. Singleton locks: one holder per platform; when the holder's
connection is killed it stops its inbound connection at once, and the other takes over.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from approvals.clock import SystemClock
from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore, WriteTx
from approvals.store.notify import REQUEST_FINAL_CHANNEL, NotificationListener, postgres_dsn
from bot.leadership import SingletonLocks, lock_key
from bot.waiters import DATABASE_POLL_SECONDS, NOTIFIED_RECHECK_SECONDS, RequestWaiters
from tests.multiprocess.conftest import _admin
from tests.waiting import wait_for
from tests.world import build_test_runtime, make_directory, make_policies

pytestmark = pytest.mark.postgres


@dataclass
class Received:
    """Notifications a listener handed over, by channel."""

    final: list[str] = field(default_factory=list)
    listening_calls: int = 0

    def on_final(self, payload: str) -> None:
        self.final.append(payload)

    def on_listening(self) -> None:
        self.listening_calls += 1


async def terminate_backends(database_url: str, application_name: str) -> int:
    admin = await _admin()
    try:
        database = database_url.rsplit("/", 1)[1]
        return len(
            await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = $2",
                database,
                application_name,
            )
        )
    finally:
        await admin.close()


@pytest.fixture
def service(store: SqlStore) -> ApprovalService:
    """The service of a runtime on the real clock (processes coordinate in real time)."""
    rules = Rules(policies=make_policies(), directory=make_directory())
    return build_test_runtime(store, SystemClock(), rules).service


async def create(service: ApprovalService) -> str:
    outcome = await service.create(
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy web")
    )
    assert isinstance(outcome, Created)
    return outcome.request.id


async def test_final_changes_are_notified_on_commit_and_not_on_rollback(
    service, store, database_url
):
    received = Received()
    listener = NotificationListener(
        postgres_dsn(database_url), {REQUEST_FINAL_CHANNEL: received.on_final}
    )
    await listener.start()
    try:
        assert listener.listening
        request_id = await create(service)  # pending: nothing to tell
        with pytest.raises(RuntimeError):
            await notify_then_fail(store)

        await service.cancel(request_id, "deploy-bot")
        await wait_for(lambda: _true(received.final == [request_id]), within=5)
        assert (await service.get(request_id)).status is Status.CANCELLED
    finally:
        await listener.stop()
    assert "rolled-back" not in received.final


async def notify_then_fail(store: SqlStore) -> None:
    def _change(tx: WriteTx) -> None:
        tx.notify(REQUEST_FINAL_CHANNEL, "rolled-back")
        raise RuntimeError("roll back")

    await store.run(_change)


async def _true(value: bool) -> bool:
    return value


async def test_listener_reconnects_after_its_connection_is_killed(service, database_url):
    received = Received()
    listener = NotificationListener(
        postgres_dsn(database_url),
        {REQUEST_FINAL_CHANNEL: received.on_final},
        on_listening=received.on_listening,
    )
    waiters = RequestWaiters(service, notifications_live=lambda: listener.listening)
    await listener.start()
    try:
        assert waiters.recheck_interval == NOTIFIED_RECHECK_SECONDS
        assert await terminate_backends(database_url, "signoff listener") == 1

        async def dropped() -> bool:
            return not listener.listening or listener.reconnects >= 1

        await wait_for(dropped, within=5, poll=0.005)

        async def back() -> bool:
            return listener.listening and received.listening_calls == 2

        await wait_for(back, within=10)
        assert listener.reconnects == 1
        request_id = await create(service)
        await service.cancel(request_id, "deploy-bot")
        await wait_for(lambda: _true(received.final == [request_id]), within=5)
    finally:
        await listener.stop()
    assert waiters.recheck_interval == DATABASE_POLL_SECONDS


@dataclass
class InboundRecorder:
    """A singleton-inbound adapter that only records when its connection opens and closes."""

    platform: str
    events: list[tuple[str, str, float]]
    inbound_is_singleton: bool = True
    connected: bool = False

    async def start(self, sink: object, *, inbound: bool = True) -> None:
        self.connected = inbound

    async def start_inbound(self) -> None:
        self.connected = True
        self.events.append((self.platform, "open", time.monotonic()))

    async def stop_inbound(self) -> None:
        self.connected = False
        self.events.append((self.platform, "close", time.monotonic()))


async def holder_pid(database_url: str, platform: str) -> int | None:
    key = lock_key(platform)
    admin = await _admin()
    try:
        return await admin.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = $1) "
            "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $2",
            database_url.rsplit("/", 1)[1],
            key,
        )
    finally:
        await admin.close()


async def test_one_process_holds_each_platform_and_the_other_takes_over_when_it_is_cut_off(
    database_url,
):
    events: list[tuple[str, str, float]] = []
    first = InboundRecorder("telegram", events)
    second = InboundRecorder("telegram", events)
    dsn = postgres_dsn(database_url)
    holder = SingletonLocks(dsn, {"telegram": first}, retry_interval=0.2)
    standby = SingletonLocks(dsn, {"telegram": second}, retry_interval=0.2)
    await holder.start()
    await standby.start()
    try:
        assert holder.status() == {"telegram": "held"}
        assert standby.status() == {"telegram": "standby"}
        assert (first.connected, second.connected) == (True, False)
        assert await holder_pid(database_url, "telegram") is not None

        admin = await _admin()
        try:
            pid = await holder_pid(database_url, "telegram")
            cut = time.monotonic()
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

        async def taken_over() -> bool:
            return second.connected

        await wait_for(taken_over, within=5, poll=0.01)
        took = time.monotonic() - cut
        assert not first.connected
        closed = next(at for name, what, at in events if what == "close")
        opened = [at for name, what, at in events if what == "open"][-1]
        # Fail safe: the cut-off holder stopped before the other one started.
        assert closed <= opened
        assert standby.status() == {"telegram": "held"}
        assert holder.status() == {"telegram": "standby"}
        print(f"\nlock taken over {took * 1000:.0f} ms after the holder's connection was cut")
    finally:
        await standby.stop()
        await holder.stop()
    assert not second.connected


async def test_each_platform_has_its_own_stable_lock():
    assert lock_key("telegram") == lock_key("telegram")
    assert len({lock_key(name) for name in ("telegram", "discord", "slack")}) == 3
    assert all(-(2**63) <= lock_key(name) < 2**63 for name in ("telegram", "discord", "slack"))


async def test_a_waiter_on_another_process_is_woken_by_the_notification(service, database_url):
    # Two services on one database stand for two processes: the waiter's own service
    # never sees the change, only the notification does.
    other = build_test_runtime(SqlStore(database_url), SystemClock(), service.rules).service
    waiters = RequestWaiters(service, notifications_live=lambda: True)
    listener = NotificationListener(
        postgres_dsn(database_url), {REQUEST_FINAL_CHANNEL: waiters.wake}
    )
    await listener.start()
    try:
        request_id = await create(service)
        waiting = asyncio.create_task(waiters.wait_final(request_id, 30))
        await wait_for(lambda: _true(waiters.waiting == 1), within=5)
        started = time.monotonic()
        await other.cancel(request_id, "deploy-bot")
        request = await asyncio.wait_for(waiting, timeout=10)
        woke_after = time.monotonic() - started
    finally:
        await listener.stop()
        await other.store.close()
    assert request is not None
    assert request.status is Status.CANCELLED
    assert woke_after < 1.0  # the re-check interval is 5 s here
