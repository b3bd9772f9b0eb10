"""F5: another process holds SQLite's write lock for seconds while people click.

A separate Python process opens the database and holds ``BEGIN IMMEDIATE`` for a while.
A click made meanwhile is recorded once the lock frees (when that is within the busy
timeout), or the person is told to try again and nothing is recorded (when it is not);
a click is never dropped in silence. Shown for the web inbox (the answer is the HTTP
response) and for Slack (the click is acknowledged at once; the outcome follows).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.store import SqlStore
from tests.adapters.slack.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, start_adapter
from tests.fakes.slack import FakeSlack
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.web.conftest import InboxHarness, inbox_harness
from tests.world import build_test_runtime, deliver_through

SWEEP = timedelta(seconds=1)
BUSY_TIMEOUT = 3.0
"""The store's busy timeout in these tests (production: 15 s)."""
SHORT_HOLD = 1.5
"""A lock held for less than the busy timeout: the click waits and is recorded."""
LONG_HOLD = 5.0
"""A lock held past the busy timeout: the person is told to try again."""

_LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))  # the fault itself: a writer that keeps the lock this long
connection.execute("ROLLBACK")
print("released", flush=True)
"""


@asynccontextmanager
async def write_lock_held(path: Path, seconds: float) -> AsyncIterator[asyncio.Task[float]]:
    """Another process holds the database's write lock for ``seconds``.

    Yields once the lock is held; the task resolves to the monotonic moment it was released.
    """
    locker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LOCKER,
        str(path),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    assert locker.stdout is not None
    assert (await asyncio.wait_for(locker.stdout.readline(), 30)).strip() == b"locked"

    async def released() -> float:
        assert locker.stdout is not None
        line = await locker.stdout.readline()
        moment = time.monotonic()
        assert line.strip() == b"released"
        await locker.wait()
        return moment

    task = asyncio.create_task(released())
    try:
        yield task
    finally:
        await task


@asynccontextmanager
async def busy_inbox(tmp_path: Path, rules, clock) -> AsyncIterator[tuple[InboxHarness, Path]]:
    path = tmp_path / "busy.db"
    store = SqlStore(f"sqlite:///{path}", busy_timeout=BUSY_TIMEOUT)
    await store.migrate()
    inbox = await inbox_harness(build_test_runtime(store, clock, rules))
    try:
        yield inbox, path
    finally:
        await inbox.close()
        await store.close()


async def test_F5_a_web_click_waits_out_a_short_lock_and_is_recorded(tmp_path, rules, clock):
    """F5: the lock is held 1.5 s of a 3 s busy timeout; the approval lands when it frees."""
    async with busy_inbox(tmp_path, rules, clock) as (inbox, path):
        request = await inbox.create()
        alice = await inbox.signed_in("alice")
        csrf = await inbox.csrf_for(alice, request.id)
        async with write_lock_held(path, SHORT_HOLD) as released:
            clicked = time.monotonic()
            answer = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
            answered = time.monotonic()
        freed = await released
        assert answer.status_code == 303, answer.text
        assert answered >= freed, "the click was answered while the lock was still held"
        current = await inbox.service.get(request.id)
        assert current is not None
        assert current.status is Status.APPROVED
        await check_invariants(
            inbox.store, now=clock.now(), sweep_interval=SWEEP, accepted=[request.id]
        )
        print(f"F5 web, short lock: the click waited {answered - clicked:.2f} s, then recorded")


async def test_F5_a_web_click_past_the_busy_timeout_asks_to_retry_and_records_nothing(
    tmp_path, rules, clock
):
    """F5: the lock outlasts the busy timeout: 503 "try again", nothing half-written."""
    async with busy_inbox(tmp_path, rules, clock) as (inbox, path):
        request = await inbox.create()
        alice = await inbox.signed_in("alice")
        csrf = await inbox.csrf_for(alice, request.id)
        audit_before = await inbox.audit_count()
        async with write_lock_held(path, LONG_HOLD):
            clicked = time.monotonic()
            busy = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
            waited = time.monotonic() - clicked
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "2"
        assert "nothing was recorded" in busy.text
        assert waited >= BUSY_TIMEOUT * 0.9
        current = await inbox.service.get(request.id)
        assert current is not None
        assert current.votes == ()
        assert await inbox.audit_count() == audit_before

        retried = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
        assert retried.status_code == 303
        current = await inbox.service.get(request.id)
        assert current is not None
        assert current.status is Status.APPROVED
        await check_invariants(
            inbox.store, now=clock.now(), sweep_interval=SWEEP, accepted=[request.id]
        )
        print(f"F5 web, long lock: told to retry after {waited:.2f} s; the retry was recorded")


async def test_F5_a_slack_click_during_a_long_lock_is_acked_then_told_to_retry(
    tmp_path, rules, clock
):
    """F5: Slack acks at once; the vote cannot be written, so the person is told to retry."""
    path = tmp_path / "busy.db"
    store = SqlStore(f"sqlite:///{path}", busy_timeout=BUSY_TIMEOUT)
    await store.migrate()
    runtime = build_test_runtime(store, clock, rules)
    service = runtime.service
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await fake.start()
    adapter = await start_adapter(fake, service, "http")
    try:
        created = await service.create(
            CreateCommand(agent="a", action="deploy.web", title="Deploy")
        )
        assert isinstance(created, Created), created
        request = created.request
        await deliver_through(runtime, {"slack": adapter}).drain()
        [card] = fake.posts_in("C0OPS")
        async with write_lock_held(path, LONG_HOLD):
            clicked = time.monotonic()
            ack = await fake.click(card, user="U0ALICE", action_id="signoff_approve")
            acked = time.monotonic() - clicked

            async def told() -> str | None:
                notices = fake.ephemerals_for("U0ALICE")
                return notices[-1].text if notices else None

            notice = await wait_for(told, within=BUSY_TIMEOUT + 10)
        assert ack["status"] == 200
        assert acked < 1.0, "the click was not acknowledged at once"
        assert "not counted" in notice
        assert "try again" in notice
        current = await service.get(request.id)
        assert current is not None
        assert current.votes == ()

        await fake.click(card, user="U0ALICE", action_id="signoff_approve")

        async def approved() -> bool:
            current = await service.get(request.id)
            assert current is not None
            return current.status is Status.APPROVED

        await wait_for(approved)
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP, accepted=[request.id])
        print(f"F5 Slack, long lock: acked in {acked:.2f} s, then told: {notice!r}")
    finally:
        await adapter.stop()
        if fake.events is not None:
            await fake.events.aclose()
        await fake.close()
        await store.close()
