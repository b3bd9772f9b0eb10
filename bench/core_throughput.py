"""Core throughput: creates, votes and deadline sweeps per second on SQLite and PostgreSQL.

Prints figures; asserts nothing. Run: .venv/bin/python -m bench.core_throughput
(PostgreSQL at $SIGNOFF_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1/test;
its signoff tables are dropped and recreated).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from approvals.clock import ManualClock
from approvals.directory import Directory, Person
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Created
from approvals.policy import Level, Policy, PolicySet
from approvals.service import Rules
from approvals.store import SqlStore
from tests.world import build_test_runtime

REQUESTS = 2000
CONCURRENCY = 20
POSTGRES_URL = os.environ.get(
    "SIGNOFF_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def rules() -> Rules:
    people = {f"p{i}": Person(f"p{i}", {"slack": f"U{i}"}) for i in range(3)}
    policy = Policy(name="bench", levels=(Level(tuple(people), ("web",), timedelta(minutes=30)),))
    return Rules(PolicySet((policy,)), Directory(people=people, platforms=frozenset({"slack"})))


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def timed_batch(calls, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(calls)
    started = time.perf_counter()

    async def worker():
        while queue:
            call = queue.pop()
            begun = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def report(label: str, count: int, elapsed: float, latencies: list[float]) -> None:
    print(
        f"  {label:<8} {count / elapsed:8.0f}/s   p50 {statistics.median(latencies) * 1000:6.1f} ms"
        f"   p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
    )


async def run(store: SqlStore, name: str) -> None:
    await store.migrate()
    clock = ManualClock()
    service = build_test_runtime(store, clock, rules()).service
    ids: list[str] = []

    def create_call(index: int):
        async def call():
            outcome = await service.create(
                CreateCommand(
                    agent="bench", action="deploy.x", title=f"r{index}", params={"n": index}
                )
            )
            assert isinstance(outcome, Created), outcome
            ids.append(outcome.request.id)

        return call

    print(f"{name}: {REQUESTS} requests, {CONCURRENCY} concurrent callers")
    elapsed, latencies = await timed_batch([create_call(i) for i in range(REQUESTS)], CONCURRENCY)
    report("create", REQUESTS, elapsed, latencies)

    half = ids[: REQUESTS // 2]

    def vote_call(request_id: str):
        async def call():
            await service.vote(VoteCommand(request_id, "slack", "U0", Verdict.APPROVE))

        return call

    elapsed, latencies = await timed_batch([vote_call(i) for i in half], CONCURRENCY)
    report("vote", len(half), elapsed, latencies)

    clock.advance(timedelta(hours=1))
    started = time.perf_counter()
    swept = 0
    while handled := await service.process_due(limit=200):
        swept += handled
    elapsed = time.perf_counter() - started
    print(f"  sweep    {swept / elapsed:8.0f}/s   ({swept} timeouts in {elapsed:.2f} s)")
    verification = await store.verify_audit()
    print(f"  audit    {verification.checked} entries verified, chain ok: {verification.ok}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SqlStore(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            await run(sqlite, "SQLite (file, WAL)")
        finally:
            await sqlite.close()
    postgres = SqlStore(POSTGRES_URL)
    try:
        await postgres.ping()
    except Exception as exc:
        print(f"PostgreSQL skipped: {exc}")
        await postgres.close()
        return
    try:
        await postgres.drop_everything()
        await run(postgres, "PostgreSQL")
    finally:
        await postgres.drop_everything()
        await postgres.close()


if __name__ == "__main__":
    asyncio.run(main())
