"""F7: two ``signoff serve`` processes on PostgreSQL, thousands of requests falling due at
once, and one process killed in the middle of a sweep batch.

Both processes sweep deadlines (``SKIP LOCKED``) and deliver the outbox (leases). Process
A is armed to kill itself inside its second sweep transaction that has work, holding a
batch of claimed rows; every request has a callback URL, so each timeout also queues a
webhook that either process may be sending when A dies. Pass: each request timed out
exactly once; every webhook reached the receiver, re-sent at most once per row A held
(delivery is at least once, and receivers deduplicate by event id); nothing stays pending
past the (shortened) outbox lease; the invariants hold.

:data:`REQUESTS` is scaled down from RELIABILITY.md's 10,000 to fit a two-core machine;
The processes, their database and their logs come from the two-process harness in
tests/multiprocess, which also holds the scenarios that run without a crash point.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from sqlalchemy import func, select

from approvals.clock import SystemClock
from approvals.crashpoints import CRASH_AT_ENV, CrashPoint
from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.service import ApprovalService
from approvals.store import SqlStore
from approvals.tables import OUTBOX
from bot.app import TEST_OUTBOX_LEASE_ENV, rules_from
from config import load_config_text
from tests.multiprocess.conftest import (  # noqa: F401 - fixtures used by name
    Cluster,
    SignoffProcess,
    agent_key,
    cluster,
    database_url,
    store,
)
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.world import build_test_runtime

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REQUESTS = 600
"""Requests falling due together (RELIABILITY.md: 10,000; scaled to a two-core machine)."""
SPREAD = timedelta(seconds=3)
"""Their deadlines fall within this window."""
LEASE_SECONDS = 20
"""The outbox lease (production: 180 s); a platform call gets half of it."""
SWEEP = timedelta(seconds=1)
DISPATCH_BATCH = 50
"""Outbox rows one dispatcher round holds at most (OutboxDispatcher's default batch): the
most a killed process can leave in flight, so the most that may be sent twice."""
WEBHOOK_EVERY = 10
"""Every tenth request has a callback URL: a webhook row in the outbox when it times out."""
CREATE_CONCURRENCY = 5
"""Creates in flight at once (each holds a PostgreSQL connection; the server is shared)."""
AGENT = "f7-bot"

CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "{url}"}}
people: {{alice: {{}}}}
agents:
  {agent}: {{max_open: 100000}}
webhooks: {{allow: ["127.0.0.1/32"]}}  # the webhook receiver listens on loopback
policies:
  - name: default
    min_timeout: 1s
    levels: [{{approvers: [alice], notify: [web], timeout: 30m}}]
    on_timeout: expire
"""


class WebhookReceiver:
    """The agents' side: counts every delivery of every request's final-state event."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.events: dict[str, set[str]] = {}
        self.last_at = 0.0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{request_id}", self._hook)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{n}"

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        request_id = str(body["approval"]["id"])
        self.deliveries[request_id] += 1
        self.events.setdefault(request_id, set()).add(request.headers["Signoff-Event-Id"])
        self.last_at = time.monotonic()
        return web.json_response({"ok": True})


async def test_F7_two_processes_one_killed_mid_batch_time_out_each_request_once(
    cluster: Cluster,  # noqa: F811
    store: SqlStore,  # noqa: F811
    database_url: str,  # noqa: F811
):
    """F7: 600 deadlines, two processes, one SIGKILLed inside a sweep batch."""
    receiver = WebhookReceiver()
    await receiver.start()
    await agent_key(store, AGENT)

    def config(port: int) -> str:
        return CONFIG.format(port=port, url=database_url, agent=AGENT)

    lease = {TEST_OUTBOX_LEASE_ENV: str(LEASE_SECONDS)}
    armed = {**lease, CRASH_AT_ENV: f"{CrashPoint.DURING_SWEEP}@2"}
    killed = cluster.launch("a", config, env=armed)
    survivor = cluster.launch("b", config, env=lease)
    try:
        await asyncio.gather(killed.until_ready(), survivor.until_ready())

        loaded = load_config_text(config(killed.port), "f7.yaml")
        service = build_test_runtime(store, SystemClock(), rules_from(loaded)).service
        creating = time.monotonic()
        ids = await _create_falling_due_together(service, receiver)
        print(f"F7: created {REQUESTS} requests in {time.monotonic() - creating:.1f} s")

        await _killed_at(killed, CrashPoint.DURING_SWEEP)
        killed_at = time.monotonic()

        async def all_final_and_sent() -> bool:
            async with store.read() as reader:
                pending = await reader.conn.execute(
                    select(func.count()).where(OUTBOX.c.state == "pending")
                )
                open_requests = await reader.count_open(AGENT)
            return open_requests == 0 and pending.scalar_one() == 0

        await wait_for(all_final_and_sent, within=180, poll=0.5)
        settled_after_kill = time.monotonic() - killed_at

        requests = []
        for request_id in ids:
            request = await service.get(request_id)
            assert request is not None
            requests.append(request)
        assert {r.status for r in requests} == {Status.EXPIRED}
        late = []
        for r in requests:
            assert r.decided_at is not None  # expired
            late.append((r.decided_at - r.deadline).total_seconds())
        late.sort()
        assert late[0] >= 0, "a request timed out before its deadline"
        with_webhooks = {r.id for r in requests if r.callback_url}
        assert set(receiver.deliveries) == with_webhooks
        duplicates = sum(receiver.deliveries.values()) - len(with_webhooks)
        assert duplicates <= DISPATCH_BATCH, duplicates
        assert all(len(events) == 1 for events in receiver.events.values()), "event id changed"

        report = await check_invariants(
            store,
            now=datetime.now(UTC),
            sweep_interval=SWEEP,
            accepted=ids,
        )
        assert (report.requests, report.final) == (REQUESTS, REQUESTS)
        assert report.outbox == {"sent": len(with_webhooks)}
        print(
            f"F7: {REQUESTS} requests, two processes, A killed inside its second sweep batch; "
            f"all expired once; lateness p50 {statistics.median(late):.2f} s, "
            f"max {late[-1]:.2f} s; {duplicates} webhooks re-sent; settled "
            f"{settled_after_kill:.1f} s after the kill"
        )
    finally:
        await receiver.close()


async def _killed_at(process: SignoffProcess, point: CrashPoint) -> None:
    """Wait until ``process`` killed itself with SIGKILL at ``point``."""

    async def died() -> bool:
        return not process.running()

    await wait_for(died, within=60, poll=0.05)
    assert process.process is not None
    assert process.process.returncode == -signal.SIGKILL, process.log_tail()
    assert f"crash point {point} reached" in process.log.read_text(errors="replace")


async def _create_falling_due_together(
    service: ApprovalService, receiver: WebhookReceiver
) -> list[str]:
    """Make the requests, each with a timeout that puts its deadline in one shared window,
    which opens once they are all made (so the sweeps do not compete with the making)."""
    ids: list[str] = []

    async def create(n: int, window_opens: datetime) -> None:
        target = window_opens + SPREAD * (n / REQUESTS)
        timeout = max(timedelta(seconds=1), target - datetime.now(UTC))
        outcome = await service.create(
            CreateCommand(
                agent=AGENT,
                action="cache.flush",
                title=f"Flush cache {n}",
                params={"cache": n},
                timeout=timeout,
                callback_url=receiver.url(n) if n % WEBHOOK_EVERY == 0 else None,
            )
        )
        assert isinstance(outcome, Created), outcome
        assert outcome.is_new, outcome
        ids.append(outcome.request.id)

    # Time a first few creates (on a first guess), then open the window when the rest should
    # all be made.
    started = time.monotonic()
    guess = datetime.now(UTC) + timedelta(seconds=REQUESTS * 0.02 * 1.5 + 3)
    await asyncio.gather(*(create(n, guess) for n in range(CREATE_CONCURRENCY)))
    per_create = (time.monotonic() - started) / CREATE_CONCURRENCY
    remaining = timedelta(seconds=per_create * (REQUESTS - CREATE_CONCURRENCY) * 1.5 + 3)
    window_opens = datetime.now(UTC) + remaining
    for chunk in range(CREATE_CONCURRENCY, REQUESTS, CREATE_CONCURRENCY):
        upto = min(chunk + CREATE_CONCURRENCY, REQUESTS)
        await asyncio.gather(*(create(n, window_opens) for n in range(chunk, upto)))
    return ids
