"""L1 and L2: agents create requests against a real ``signoff serve`` on SQLite.

L1 holds a steady create rate for half a minute (open loop: a create is started every
1/RATE s whatever the answers take): no 5xx, every 2xx has its row, the p99 create latency
is reported, and the server's resident memory stays flat. L2 throws far more at it than it
takes: it sheds with 429 and ``Retry-After`` (``rate_limited`` past the per-agent and
overall limits, ``busy`` past the creates one process works on at once), never a 5xx,
and nothing it accepted is lost. Sizes fit a 2-core machine; they are module constants.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from bot.app import OVERALL_LIMIT, PER_AGENT_LIMIT
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.web.test_end_to_end import SIGNOFF, free_port

AGENTS = 4
RATE = 20.0
"""L1: creates a second, spread over the agents (each well under its 10/s limit)."""
DURATION = 30.0
"""L1: seconds of steady load."""
WARM_UP = 5.0
"""L1: seconds before the first memory reading (imports, caches and pools settle)."""
MEMORY_GROWTH = 1.25
"""L1: the most the server's RSS may grow from after warm-up to the end (x)."""
P99_LIMIT = 2.0
"""L1: seconds; the p99 create latency must stay under it (reported either way)."""
FLOOD_AGENTS = 2
FLOOD_PER_AGENT = 500
IN_FLIGHT = 100
"""L2: calls in flight at once: 2 agents x 500 creates, as fast as the server answers."""
SWEEP = timedelta(seconds=1)

CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
{agents}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


@dataclass
class Served:
    base: str
    keys: list[str]
    process: subprocess.Popen[bytes]
    db: Path
    log: Path
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS for the server")

    async def create(self, client: httpx.AsyncClient, key: str, title: str) -> httpx.Response:
        began = time.monotonic()
        response = await client.post(
            f"{self.base}/v1/approvals",
            json={"action": "deploy.web", "title": title, "params": {"n": title}},
            headers={"Authorization": f"Bearer {key}"},
        )
        self.latencies.append(time.monotonic() - began)
        self.statuses[response.status_code] += 1
        if response.is_success:
            self.accepted.append(response.json()["id"])
        return response

    async def invariants(self) -> None:
        store = SqlStore(f"sqlite:///{self.db}")
        try:
            report = await check_invariants(
                store, now=SystemClock().now(), sweep_interval=SWEEP, accepted=self.accepted
            )
        finally:
            await store.close()
        assert report.requests == len(self.accepted)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """A ``signoff serve`` process on a free port, with an API key for each agent."""
    port = free_port()
    db = tmp_path / "load.db"
    names = [f"load-{n:02d}" for n in range(max(AGENTS, FLOOD_AGENTS))]
    agents = "\n".join(f"  {name}: {{max_open: 100000}}" for name in names)
    config = tmp_path / "signoff.yaml"
    config.write_text(CONFIG.format(port=port, db=db, agents=agents), encoding="utf-8")
    store = SqlStore(f"sqlite:///{db}")
    await store.migrate()
    access = AccessStore(store, SystemClock())
    keys = [await access.create_agent_key(name) for name in names]
    await store.close()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(SIGNOFF), "serve", "--config", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    served = Served(f"http://127.0.0.1:{port}", keys, process, db, log)

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{served.base}/healthz")).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, log.read_text()
            return False

    try:
        await wait_for(healthy, within=60, poll=0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@pytest.mark.slow
async def test_L1_a_steady_create_rate_keeps_latency_and_memory_in_check(served, record_property):
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=1.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls: list[asyncio.Task[httpx.Response]] = []
        began = time.monotonic()
        warm_rss = 0
        n = 0
        while (elapsed := time.monotonic() - began) < DURATION:
            if not warm_rss and elapsed >= WARM_UP:
                warm_rss = served.rss_kib()
            key = served.keys[n % AGENTS]
            calls.append(asyncio.create_task(served.create(client, key, f"steady {n}")))
            n += 1
            # Open loop: the next create starts on schedule, not when this one returns.
            await asyncio.sleep(max(0.0, began + n / RATE - time.monotonic()))
        await asyncio.gather(*calls)
        end_rss = served.rss_kib()

    p50, p99 = percentile(served.latencies, 0.50), percentile(served.latencies, 0.99)
    figures = (
        f"L1: {n} creates in {DURATION:.0f} s ({n / DURATION:.1f}/s), answers "
        f"{dict(served.statuses)}, latency p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms "
        f"max {max(served.latencies) * 1000:.0f} ms, RSS {warm_rss} KiB after warm-up, "
        f"{end_rss} KiB at the end"
    )
    print(figures)
    record_property("L1", figures)
    assert set(served.statuses) == {201}, figures
    assert p99 < P99_LIMIT, figures
    assert end_rss <= warm_rss * MEMORY_GROWTH, figures
    await served.invariants()


@pytest.mark.slow
async def test_L2_overload_is_shed_with_429_and_retry_after_and_nothing_accepted_is_lost(
    served, record_property
):
    slots = asyncio.Semaphore(IN_FLIGHT)
    retry_after: Counter[str] = Counter()
    codes: Counter[str] = Counter()

    async def create(client: httpx.AsyncClient, key: str, title: str) -> None:
        async with slots:
            response = await served.create(client, key, title)
        if response.status_code == 429:
            retry_after[response.headers.get("Retry-After", "missing")] += 1
            codes[response.json()["error"]["code"]] += 1

    # Idle connections are dropped well before the server's 5 s keep-alive ends, so a
    # reused one is never one the server is closing at that moment.
    limits = httpx.Limits(
        max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT, keepalive_expiry=1.0
    )
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(
            *(
                create(client, served.keys[agent], f"flood {agent}-{n}")
                for n in range(FLOOD_PER_AGENT)
                for agent in range(FLOOD_AGENTS)
            )
        )
    took = time.monotonic() - began

    total = FLOOD_AGENTS * FLOOD_PER_AGENT
    accepted = len(served.accepted)
    figures = (
        f"L2: {total} creates from {FLOOD_AGENTS} agents in {took:.1f} s, {IN_FLIGHT} in "
        f"flight: answers {dict(served.statuses)}, 429 codes {dict(codes)}, Retry-After "
        f"{dict(retry_after)}, p99 {percentile(served.latencies, 0.99) * 1000:.0f} ms"
    )
    print(figures)
    record_property("L2", figures)
    assert set(served.statuses) <= {201, 429}, figures
    assert served.statuses[429] > 0, figures
    assert set(codes) <= {"busy", "rate_limited"}, figures
    assert "missing" not in retry_after, figures
    assert all(int(seconds) >= 1 for seconds in retry_after), figures
    # What was let through fits the limits: per agent, and overall.
    per_agent_most = PER_AGENT_LIMIT.burst + PER_AGENT_LIMIT.rate * took
    assert accepted <= min(
        FLOOD_AGENTS * per_agent_most, OVERALL_LIMIT.burst + OVERALL_LIMIT.rate * took
    ), figures
    assert accepted >= min(FLOOD_AGENTS * PER_AGENT_LIMIT.burst, OVERALL_LIMIT.burst), figures
    await served.invariants()
