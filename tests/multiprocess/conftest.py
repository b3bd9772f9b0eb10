"""Several real ``signoff serve`` processes on one PostgreSQL database, and the fakes they use.

Each test gets a database of its own (created, migrated, dropped afterwards). Processes are
started with ``signoff serve --config F`` on free 127.0.0.1 ports, their output goes to a
log file that is printed when the test ends, and they are stopped (or were killed) by then.
The platform fakes are the ones the adapter tests use, running in the test's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeBotApi
from tests.waiting import wait_for
from tests.world import POSTGRES_URL, missing_prerequisite

SIGNOFF = Path(sys.executable).with_name("signoff")
START_WITHIN = 60.0
"""Seconds a process may take to answer /readyz (two processes migrate and start at once)."""
_databases = itertools.count(1)


def singletons(readiness: dict[str, Any]) -> dict[str, str]:
    """Which one-per-token connections a process holds, from its /readyz body."""
    found: dict[str, str] = readiness.get("details", {}).get("singletons", {})
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _admin() -> Any:
    base = make_url(POSTGRES_URL)
    return await asyncpg.connect(
        host=base.host, port=base.port, user=base.username, database=base.database
    )


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone."""
    try:
        admin = await _admin()
    except Exception as exc:
        missing_prerequisite(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    name = f"signoff_mp_{os.getpid()}_{next(_databases)}"
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        # Commits are visible to every process at once either way; skipping the wait for
        # the disk flush only matters if PostgreSQL itself crashes, which no test does. On
        # a slow disk it keeps the 2,000-request test within a minute.
        await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    except asyncpg.PostgresError as exc:
        missing_prerequisite(f"this PostgreSQL role may not create databases: {exc}")
    finally:
        await admin.close()
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    store = SqlStore(url)
    await store.migrate()
    await store.close()
    yield url
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """The test's own view of the shared database (to set up keys and count what happened)."""
    sql_store = SqlStore(database_url)
    yield sql_store
    await sql_store.close()


async def agent_key(store: SqlStore, agent: str) -> str:
    return await AccessStore(store, SystemClock()).create_agent_key(agent)


@dataclass
class SignoffProcess:
    """One ``signoff serve`` subprocess."""

    name: str
    port: int
    config: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    killed_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(SIGNOFF), "serve", "--config", str(self.config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def readiness(self) -> dict[str, Any] | None:
        """The /readyz body, or ``None`` while the process does not answer."""
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"{self.url}/readyz")
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = response.json()
        return body

    async def until_ready(self, within: float = START_WITHIN) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            assert self.running(), f"{self.name} exited:\n{self.log_tail()}"
            body = await self.readiness()
            return body if body is not None and body["status"] == "ready" else None

        return await wait_for(ready, within=within, poll=0.1)

    async def holds(self, platform: str) -> bool:
        body = await self.readiness()
        return body is not None and singletons(body).get(platform) == "held"

    async def metric(self, name: str) -> float:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{self.url}/metrics")).text
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    async def kill(self) -> None:
        """kill -9: no shutdown of any kind, connections just vanish."""
        assert self.process is not None
        self.killed_at = time.monotonic()
        os.kill(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait, 10)

    async def stop(self) -> None:
        """SIGTERM and wait; the event loop keeps serving the fakes the process talks to."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """Starts processes that share one config template and one database."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.processes: list[SignoffProcess] = []

    def launch(
        self, name: str, config: Callable[[int], str], env: dict[str, str] | None = None
    ) -> SignoffProcess:
        """Start ``signoff serve`` with ``config(port)`` as its config file."""
        port = free_port()
        path = self.tmp_path / f"{name}.yaml"
        path.write_text(config(port), encoding="utf-8")
        process = SignoffProcess(
            name=name,
            port=port,
            config=path,
            log=self.tmp_path / f"{name}.log",
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        process.start()
        self.processes.append(process)
        return process

    async def stop_all(self) -> None:
        await asyncio.gather(*(process.stop() for process in self.processes))

    def logs(self) -> str:
        return "\n".join(
            f"----- {process.name} (pid {process.pid}) -----\n{process.log_tail(80)}"
            for process in self.processes
            if process.process is not None
        )


@pytest.fixture
async def cluster(tmp_path: Path, database_url: str) -> AsyncIterator[Cluster]:
    group = Cluster(tmp_path, database_url)
    try:
        yield group
    finally:
        await group.stop_all()
        print(group.logs())


# -- platform fakes ------------------------------------------------------------------------


class PollWatchingBotApi(FakeBotApi):
    """The fake Bot API, also counting long polls in progress (Telegram allows one)."""

    def __init__(self) -> None:
        super().__init__()
        self.polls_started = 0
        self.polls_in_progress = 0
        self.most_polls_at_once = 0

    async def _api_getUpdates(self, params: dict[str, Any]) -> web.Response:
        self.polls_started += 1
        self.polls_in_progress += 1
        self.most_polls_at_once = max(self.most_polls_at_once, self.polls_in_progress)
        try:
            return await super()._api_getUpdates(params)
        finally:
            self.polls_in_progress -= 1

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates with a higher offset."""
        return len(self._updates)

    def answers_to(self, update: dict[str, Any]) -> int:
        """How many times the bot tried to answer this callback query."""
        query_id = update["callback_query"]["id"]
        return sum(
            1
            for call in self.calls
            if call.method == "answerCallbackQuery"
            and str(call.params.get("callback_query_id")) == query_id
        )


@pytest.fixture
async def telegram() -> AsyncIterator[PollWatchingBotApi]:
    api = PollWatchingBotApi()
    api.add_group(-1001234, "ops")
    api.add_user(100001, "Alice")
    api.add_user(100002, "Bob")
    await api.start()
    yield api
    await api.close()


@dataclass
class HeldCall:
    process: str
    method: str


class RoutedSlack(FakeSlack):
    """The fake Slack, told apart per process: each process gets its own ``api_url``.

    ``hold(method)`` keeps every later call of ``method`` in flight after the fake has
    applied it (the platform did the work; the answer has not come back yet) until
    ``release(process)`` or the end of the test.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls_by_process: Counter[tuple[str, str]] = Counter()
        self.held: list[HeldCall] = []
        self._held_method: str | None = None
        self._releases: dict[str, asyncio.Event] = {}

    def api_url_for(self, process: str) -> str:
        return f"http://127.0.0.1:{self.port}/via/{process}/api/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/via/{process}/api/{method}", self._routed)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        for release in self._releases.values():
            release.set()
        await super().close()

    def hold(self, method: str) -> None:
        self._held_method = method

    def release(self, process: str) -> None:
        self._releases.setdefault(process, asyncio.Event()).set()

    def held_by(self, process: str) -> int:
        return sum(1 for call in self.held if call.process == process)

    async def _routed(self, request: web.Request) -> web.Response:
        process = request.match_info["process"]
        method = request.match_info["method"]
        response = await self._api(request)
        self.calls_by_process[(process, method)] += 1
        if method == self._held_method:
            self.held.append(HeldCall(process, method))
            await self._releases.setdefault(process, asyncio.Event()).wait()
        return response


SLACK_BOT_TOKEN = "xoxb-signoff-multiprocess"
SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TELEGRAM_TOKEN = "123456:TEST-token"


@pytest.fixture
async def slack() -> AsyncIterator[RoutedSlack]:
    fake = RoutedSlack(
        bot_token=SLACK_BOT_TOKEN, app_token="xapp-unused", signing_secret=SLACK_SIGNING_SECRET
    )
    await fake.start()
    yield fake
    await fake.close()


@dataclass
class Timeline:
    """Named moments (monotonic seconds) a test reports as its measured figures."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]

    def between(self, first: str, second: str) -> float:
        return self.marks[second] - self.marks[first]
