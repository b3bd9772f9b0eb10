"""The crash harness: a real ``signoff serve`` killed with SIGKILL at a named point.

:class:`CrashWorld` runs one ``signoff serve`` process at a time on a SQLite file of its
own, with the fake Slack (from the adapter tests) as its only chat platform, in HTTP mode:
cards are real ``chat.postMessage`` calls and clicks are signed posts to the process's
``/slack/events``. ``start(crash_at=...)`` arms one crash point
(:mod:`approvals.crashpoints`) through the ``SIGNOFF_CRASH_AT`` environment variable;
:meth:`CrashWorld.until_killed` waits for the process to die by SIGKILL at that point, and
``start()`` without it restarts the process clean, to recover. :meth:`CrashWorld.check`
ends a run with the shared invariant checker, the cards read back from the fake Slack.

Runs are kept short: the deadline sweep runs every second, cards go to a channel each so
Slack's one-post-a-second pacing does not queue them, and the outbox lease is cut to a few
seconds (``SIGNOFF_TEST_OUTBOX_LEASE_SECONDS``) so a row the killed process had claimed is
taken over soon after the restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.crashpoints import CRASH_AT_ENV
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.store import DeliveryRecord, SqlStore
from tests.fakes.slack import FakeSlack, Message
from tests.reliability.invariants import (
    InvariantReport,
    check_invariants,
    rendered_cards,
    slack_reader,
)
from tests.waiting import wait_for

SIGNOFF = Path(sys.executable).with_name("signoff")
BOT_TOKEN = "xoxb-signoff-crash"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
AGENT = "crash-bot"
ALICE, BOB = "U0ALICE", "U0BOB"
OPS, ESCALATED = "C0OPS", "C0ESCALATED"
OUTBOX_LEASE_SECONDS = 10
"""The outbox lease in the crash runs (production: 180 s). The dispatcher gives a platform
call half the lease; on a busy machine the fake Slack may take seconds to answer."""
SWEEP_INTERVAL = timedelta(seconds=1)
"""``signoff serve``'s deadline sweep interval."""
START_WITHIN = 90.0
"""Seconds a process may take to answer ``/readyz`` on a busy two-core machine."""
LEASE_ENV = "SIGNOFF_TEST_OUTBOX_LEASE_SECONDS"

CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "sqlite:///{db}"}}
people:
  alice: {{slack: {alice}}}
  bob: {{slack: {bob}}}
channels:
{channels}
platforms:
  slack:
    bot_token: "${{SLACK_BOT_TOKEN}}"
    signing_secret: "${{SLACK_SIGNING_SECRET}}"
    mode: http
    api_url: "{api_url}"
  web: {{enabled: false}}
agents:
  {agent}: {{max_open: 1000}}
policies:
  - name: escalating
    match: {{action: "esc.*"}}
    levels:
      - {{approvers: [bob], notify: [ops], timeout: 2s}}
      - {{approvers: [alice], notify: [escalated], timeout: 30m}}
{lanes}
  - name: default
    min_timeout: 1s
    levels: [{{approvers: [alice, bob], notify: [ops], timeout: 30m}}]
"""
LANES = 4
"""Extra channels ``lane0``.. for runs with several requests (action ``laneN.*``)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lane_channel(lane: int) -> str:
    return f"C0LANE{lane}"


def config_text(*, port: int, db: Path, api_url: str) -> str:
    channels = {"ops": OPS, "escalated": ESCALATED}
    channels |= {f"lane{n}": lane_channel(n) for n in range(LANES)}
    lanes = "\n".join(
        f'  - {{name: lane{n}, match: {{action: "lane{n}.*"}}, min_timeout: 1s, '
        f"levels: [{{approvers: [alice, bob], notify: [lane{n}], timeout: 30m}}]}}"
        for n in range(LANES)
    )
    return CONFIG.format(
        port=port,
        db=db,
        alice=ALICE,
        bob=BOB,
        channels="\n".join(f"  {name}: {{slack: {target}}}" for name, target in channels.items()),
        api_url=api_url,
        agent=AGENT,
        lanes=lanes,
    )


async def migrated_database(path: Path) -> str:
    """A migrated SQLite file at ``path`` with an agent key; returns the key."""
    store = SqlStore(f"sqlite:///{path}")
    try:
        await store.migrate()
        return await AccessStore(store, SystemClock()).create_agent_key(AGENT)
    finally:
        await store.close()


def copy_database(template: Path, target: Path) -> None:
    """Copy a closed SQLite database (and its WAL files, if any are left) to ``target``."""
    for suffix in ("", "-wal", "-shm"):
        source = template.with_name(template.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))


@dataclass
class ServeProcess:
    """One ``signoff serve`` process at a time, on one config file, restarted at will."""

    name: str
    config: Path
    log: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, crash_at: str | None = None) -> None:
        """Start ``signoff serve``; with ``crash_at``, armed to kill itself at that point."""
        assert not self.running(), f"{self.name} is still running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop(CRASH_AT_ENV, None)
        if crash_at is not None:
            env[CRASH_AT_ENV] = crash_at
        self.starts += 1
        with self.log.open("ab") as output:
            output.write(
                f"----- {self.name} start {self.starts}, crash at {crash_at} -----\n".encode()
            )
            output.flush()
            self.process = subprocess.Popen(
                [str(SIGNOFF), "serve", "--config", str(self.config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def until_ready(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.url, timeout=5)
        client = self._client

        async def ready() -> bool:
            assert self.running(), f"{self.name} exited:\n{self.log_tail()}"
            try:
                response = await client.get("/readyz")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await wait_for(ready, within=START_WITHIN, poll=0.1)

    async def until_killed(self, point: str, *, within: float = 30.0) -> None:
        """Wait until the process killed itself with SIGKILL at ``point``."""

        async def died() -> bool:
            return not self.running()

        await wait_for(died, within=within, poll=0.05)
        assert self.process is not None
        assert self.process.returncode == -signal.SIGKILL, (
            f"{self.name} exited with {self.process.returncode}, not by SIGKILL:\n{self.log_tail()}"
        )
        assert f"crash point {point} reached" in self.log.read_text(errors="replace")

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it hangs), in a thread: the fakes the process talks
        to while it shuts down run in this event loop."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def close(self) -> None:
        await self.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass
class CrashWorld:
    """One ``signoff serve`` process at a time, the fake Slack, and the database they share."""

    tmp_path: Path
    fake: FakeSlack
    db: Path
    key: str
    port: int = field(default_factory=free_port)
    _serve: ServeProcess | None = None
    _store: SqlStore | None = None
    _agent: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.tmp_path / "signoff.yaml"

    @property
    def log(self) -> Path:
        return self.tmp_path / "signoff.log"

    @property
    def serve(self) -> ServeProcess:
        if self._serve is None:
            self._serve = ServeProcess(
                name="signoff",
                config=self.config,
                log=self.log,
                port=self.port,
                env={
                    "SLACK_BOT_TOKEN": BOT_TOKEN,
                    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    LEASE_ENV: str(OUTBOX_LEASE_SECONDS),
                },
            )
        return self._serve

    @property
    def store(self) -> SqlStore:
        if self._store is None:
            self._store = SqlStore(f"sqlite:///{self.db}")
        return self._store

    @property
    def agent(self) -> httpx.AsyncClient:
        if self._agent is None:
            self._agent = httpx.AsyncClient(
                base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
            )
        return self._agent

    # -- the process ------------------------------------------------------------------------

    def config_text(self) -> str:
        """The config file the process starts with."""
        return config_text(port=self.port, db=self.db, api_url=self.fake.api_url)

    async def start_ready(self, *, crash_at: str | None = None) -> None:
        """(Re)write the config, start ``signoff serve`` (armed at ``crash_at``), wait ready."""
        self.config.write_text(self.config_text(), encoding="utf-8")
        self.serve.start(crash_at=crash_at)
        await self.serve.until_ready()

    async def until_killed(self, point: str, *, within: float = 30.0) -> None:
        await self.serve.until_killed(point, within=within)

    def log_tail(self, lines: int = 60) -> str:
        return self.serve.log_tail(lines)

    async def close(self) -> None:
        await self.serve.close()
        if self._agent is not None:
            await self._agent.aclose()
        if self._store is not None:
            await self._store.close()
        if self.fake.events is not None:
            await self.fake.events.aclose()
            self.fake.events = None

    # -- what an agent and an approver do ---------------------------------------------------

    async def create(
        self, action: str, *, idempotency_key: str | None = None, **body: Any
    ) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self.agent.post(
            "/v1/approvals",
            json={"action": action, "title": f"Run {action}", **body},
            headers=headers,
        )

    async def request(self, request_id: str) -> ApprovalRequest:
        found = await self.store.get_request(request_id)
        assert found is not None, f"request {request_id} has no row"
        return found

    async def deliveries(self, request_id: str) -> list[DeliveryRecord]:
        async with self.store.read() as reader:
            return await reader.deliveries(request_id)

    async def card(self, request_id: str, channel: str = OPS) -> Message:
        """The request's card in ``channel``, once its reference is stored."""

        async def stored() -> Message | None:
            for delivery in await self.deliveries(request_id):
                ref = delivery.ref
                if ref is not None and ref.get("channel") == channel:
                    return self.fake.messages.get((ref["channel"], ref["ts"]))
            return None

        return await wait_for(stored, within=30)

    async def click(self, card: Message, *, user: str = ALICE) -> dict[str, Any] | None:
        """Click Approve as ``user``; ``None`` when the process died before answering."""
        if self.fake.events is None or str(self.fake.events.base_url) != self.url:
            if self.fake.events is not None:
                await self.fake.events.aclose()
            self.fake.events = httpx.AsyncClient(base_url=self.url, timeout=30)
        try:
            return await self.fake.click(card, user=user, action_id="signoff_approve")
        except httpx.TransportError:
            return None

    async def until_status(self, request_id: str, status: Status, *, within: float = 30) -> None:
        async def reached() -> bool:
            return (await self.request(request_id)).status is status

        await wait_for(reached, within=within, poll=0.1)

    async def until_settled(self, *, within: float = 30) -> None:
        """Wait until every request is final and the outbox holds nothing pending."""

        async def settled() -> bool:
            async with self.store.read() as reader:
                pending = await reader.list_requests(status=Status.PENDING, limit=1)
                counts = await reader.outbox_counts()
            return not pending and not counts.get("pending")

        await wait_for(settled, within=within, poll=0.1)

    async def cards_shown(self) -> dict[str, dict[str, str]]:
        return await rendered_cards(self.store, slack_reader(self.fake))

    async def check(self, *, accepted: list[str]) -> InvariantReport:
        """The invariants, with the cards as the fake Slack shows them now."""
        return await check_invariants(
            self.store,
            now=datetime.now(UTC),
            sweep_interval=SWEEP_INTERVAL,
            accepted=accepted,
            cards=await self.cards_shown(),
        )


@asynccontextmanager
async def crash_world(tmp_path: Path, template: Path, key: str) -> AsyncIterator[CrashWorld]:
    """A fresh world: its own copy of the migrated database, its own fake Slack."""
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token="xapp-unused", signing_secret=SIGNING_SECRET)
    await fake.start()
    db = tmp_path / "crash.db"
    copy_database(template, db)
    world = CrashWorld(tmp_path=tmp_path, fake=fake, db=db, key=key)
    try:
        yield world
    except BaseException:
        print(world.log_tail(120))
        raise
    finally:
        await world.close()
        await fake.close()
