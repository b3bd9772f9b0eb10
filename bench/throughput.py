"""Benchmark 1: create throughput and latency, signoff against a hand-written baseline.

Both servers run as their own process on 127.0.0.1 on a SQLite file: ``signoff serve`` (one
process, started through :mod:`bench.launcher` so that the agent API's rate limits are
lifted; ``max_open`` is set high in the config) and :mod:`bench.baseline`. The same
closed-loop generator (:mod:`bench.load`) posts the same create JSON to each at 1, 8 and 64
concurrent connections, every body with a request number of its own (an ask identical to one
still pending would be answered with that request, not stored). Reported: requests/s, p50
and p99 latency, and signoff / baseline; a request that a policy decides at once
(``decision: approve``) against a plain create; and signoff on PostgreSQL, one process
against two processes sharing the database.

Run alone: .venv/bin/python -m bench.throughput [--quick]
(PostgreSQL at $SIGNOFF_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test;
the benchmark makes a scratch database of its own there and drops it afterwards.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bench.harness import (
    HOST,
    Row,
    ServerProcess,
    bearer,
    bench_launcher,
    child_environment,
    free_port,
    ms,
    run_alone,
    running,
    seed_agent_keys,
    standard_arguments,
)
from bench.load import Body, LoadResult, closed_loop

BENCHMARK = "1 Create throughput"
AGENT = "bench-agent"
GOAL_RATIO = 0.5
GOAL_P50_SECONDS = 0.002
POSTGRES_URL = os.environ.get(
    "SIGNOFF_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


_NUMBERS = itertools.count(1)
"""Request numbers, one per body sent to any server in this run: no two bodies are alike."""
_NUMBER = "<request number>"


def _create_bodies(action: str) -> Body:
    """Create bodies for ``action``, each with a ``request`` param of its own.

    signoff answers an ask identical to one its agent has pending with that request, without
    storing anything; every create here must be a new request. The baseline is sent the
    same bodies.
    """
    text = json.dumps(
        {
            "action": action,
            "title": "Deploy web 1.2.3 to production",
            "details": "Rolling deploy of the web tier, six replicas.",
            "params": {
                "env": "prod",
                "service": "web",
                "version": "1.2.3",
                "replicas": 6,
                "request": _NUMBER,
            },
        }
    )
    head, tail = (part.encode() for part in text.split(json.dumps(_NUMBER)))

    def body() -> bytes:
        return head + str(next(_NUMBERS)).encode() + tail

    return body


CREATE_BODIES = _create_bodies("deploy.web")
AUTO_BODIES = _create_bodies("auto.deploy")

CONFIG = """\
version: 1
server: {{listen: "{host}:{port}", public_url: "http://{host}:{port}"}}
database: {{url: "{database}"}}
people:
  approver: {{}}
agents:
  {agent}: {{allow: ["*"], max_open: 1000000000}}
policies:
  - name: auto
    match: {{action: "auto.*"}}
    decision: approve
    levels: [{{approvers: [approver], notify: [web], timeout: 30m}}]
  - name: default
    levels: [{{approvers: [approver], notify: [web], timeout: 30m}}]
"""


@dataclass(frozen=True)
class Sizes:
    connections: tuple[int, ...] = (1, 8, 64)
    warmup: float = 2.0
    duration: float = 10.0


FULL = Sizes()
QUICK = Sizes(warmup=0.3, duration=1.0)
AUTO_CONNECTIONS = 8
POSTGRES_CONNECTIONS = 64


def _connections(count: int) -> str:
    return "1 connection" if count == 1 else f"{count} connections"


def measures(sizes: Sizes) -> list[str]:
    names = []
    for connections in sizes.connections:
        names += [f"signoff, {_connections(connections)}", f"baseline, {_connections(connections)}"]
        if connections > 1:
            names.append(f"signoff / baseline, {connections} connections")
    names += [
        f"auto-decided / create, {AUTO_CONNECTIONS} connections",
        f"PostgreSQL, one process, {POSTGRES_CONNECTIONS} connections",
        f"PostgreSQL, two processes, {POSTGRES_CONNECTIONS} connections",
        "PostgreSQL, two processes / one",
    ]
    return names


def _figure(result: LoadResult) -> str:
    text = f"{result.rate:7.0f} req/s · p50 {ms(result.p(0.5))} · p99 {ms(result.p(0.99))}"
    busy = result.statuses.get(429, 0)
    if result.errors:
        text += f" · {result.errors} errors, {busy} of them 429 ({result.first_error[:60]})"
    else:
        text += " · no 429"
    return text


async def _load(server: ServerProcess, body: Body, connections: int, sizes: Sizes, key: str):
    return await closed_loop(
        server.base_url,
        "/v1/approvals",
        body,
        connections=connections,
        warmup=sizes.warmup,
        duration=sizes.duration,
        headers=bearer(key) if key else {},
    )


async def _interleaved(
    server: ServerProcess, key: str, sizes: Sizes
) -> tuple[LoadResult, LoadResult]:
    """Plain creates and auto-decided ones, measured in turns (A B A B, half the duration
    each) on the same server: the database grows with every run and a shared machine
    drifts, and taking turns spreads both evenly over the two."""
    half = replace(sizes, duration=sizes.duration / 2)
    plain = await _load(server, CREATE_BODIES, AUTO_CONNECTIONS, half, key)
    auto = await _load(server, AUTO_BODIES, AUTO_CONNECTIONS, half, key)
    plain = plain.then(await _load(server, CREATE_BODIES, AUTO_CONNECTIONS, half, key))
    auto = auto.then(await _load(server, AUTO_BODIES, AUTO_CONNECTIONS, half, key))
    return plain, auto


def _signoff(workdir: Path, name: str, database: str) -> ServerProcess:
    port = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(
        CONFIG.format(host=HOST, port=port, database=database, agent=AGENT), encoding="utf-8"
    )
    return bench_launcher(
        config,
        json.dumps({"lift_api_limits": True}),
        log_path=workdir / f"{name}.log",
        base_url=f"http://{HOST}:{port}",
    )


async def run(sizes: Sizes, workdir: Path) -> list[Row]:
    rows = await _sqlite_rows(sizes, workdir)
    return rows + await _postgres_rows(sizes, workdir)


async def _sqlite_rows(sizes: Sizes, workdir: Path) -> list[Row]:
    database = f"sqlite:///{workdir / 'signoff.db'}"
    keys = await seed_agent_keys(database, [AGENT])
    signoff = _signoff(workdir, "signoff", database)
    baseline_port = free_port()
    baseline = ServerProcess(
        [
            sys.executable,
            "-m",
            "bench.baseline",
            "--db",
            str(workdir / "baseline.db"),
            "--port",
            str(baseline_port),
        ],
        base_url=f"http://{HOST}:{baseline_port}",
        log_path=workdir / "baseline.log",
        env=child_environment(),
    )
    rows: list[Row] = []
    async with running(signoff), running(baseline):
        await signoff.wait_ready()
        await baseline.wait_ready()
        for connections in sizes.connections:
            ours = await _load(signoff, CREATE_BODIES, connections, sizes, keys[AGENT])
            theirs = await _load(baseline, CREATE_BODIES, connections, sizes, "")
            rows.append(Row(BENCHMARK, f"signoff, {_connections(connections)}", _figure(ours)))
            if connections == 1:
                p50 = ours.p(0.5)
                rows[-1] = Row(
                    BENCHMARK,
                    rows[-1].measure,
                    rows[-1].figure,
                    f"p50 <= {ms(GOAL_P50_SECONDS)}",
                    p50 <= GOAL_P50_SECONDS,
                )
            rows.append(Row(BENCHMARK, f"baseline, {_connections(connections)}", _figure(theirs)))
            if connections > 1:
                ratio = ours.rate / theirs.rate
                no_busy = ours.statuses.get(429, 0) == 0
                rows.append(
                    Row(
                        BENCHMARK,
                        f"signoff / baseline, {connections} connections",
                        f"{ratio:.2f}",
                        f">= {GOAL_RATIO:.1f}, no 429",
                        ratio >= GOAL_RATIO and no_busy,
                    )
                )
        plain, auto = await _interleaved(signoff, keys[AGENT], sizes)
        ratio = auto.rate / plain.rate
        rows.append(
            Row(
                BENCHMARK,
                f"auto-decided / create, {AUTO_CONNECTIONS} connections",
                f"{ratio:.2f} (auto-decided: {_figure(auto).strip()})",
                ">= 1.0 (costs no more)",
                ratio >= 0.95,  # within the noise of two runs of the same work
            )
        )
    return rows


async def _postgres_rows(sizes: Sizes, workdir: Path) -> list[Row]:
    one, two, ratio_name = measures(sizes)[-3:]
    problem = await _postgres_problem(POSTGRES_URL)
    if problem is not None:  # no PostgreSQL here: say so in the table
        return [Row(BENCHMARK, name, f"failed: {problem}") for name in (one, two, ratio_name)]
    results: dict[int, LoadResult] = {}
    async with _scratch_postgres(POSTGRES_URL) as database:
        keys = await seed_agent_keys(database, [AGENT])
        for processes in (1, 2):
            async with AsyncExitStack() as stack:
                servers = [
                    await stack.enter_async_context(
                        running(_signoff(workdir, f"postgres-{processes}-{n}", database))
                    )
                    for n in range(processes)
                ]
                for server in servers:
                    await server.wait_ready()
                share = POSTGRES_CONNECTIONS // processes
                parts = await asyncio.gather(
                    *(_load(server, CREATE_BODIES, share, sizes, keys[AGENT]) for server in servers)
                )
                merged = parts[0]
                for part in parts[1:]:
                    merged = merged.merged(part)
                results[processes] = merged
    scaling = results[2].rate / results[1].rate
    return [
        Row(BENCHMARK, one, _figure(results[1])),
        Row(BENCHMARK, two, _figure(results[2])),
        Row(BENCHMARK, ratio_name, f"{scaling:.2f}", ">= 1.0", scaling >= 1.0),
    ]


async def _postgres_problem(url: str) -> str | None:
    import asyncpg

    base = make_url(url)
    try:
        connection = await asyncpg.connect(
            host=base.host, port=base.port, user=base.username, database=base.database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {url} unreachable ({type(exc).__name__})"
    await connection.close()
    return None


@asynccontextmanager
async def _scratch_postgres(url: str) -> AsyncIterator[str]:
    """A database of the benchmark's own on the server of ``url``, dropped afterwards."""
    import asyncpg

    base = make_url(url)
    name = f"signoff_bench_{os.getpid()}"

    async def admin() -> Any:
        return await asyncpg.connect(
            host=base.host, port=base.port, user=base.username, database=base.database
        )

    connection = await admin()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        connection = await admin()
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def main(argv: list[str] | None = None) -> None:
    args = standard_arguments(__doc__.splitlines()[0]).parse_args(argv)
    run_alone(run, QUICK if args.quick else FULL)


if __name__ == "__main__":
    main()
