"""Benchmark 3: deadlines at scale — 100,000 pending requests timing out over two minutes.

The database is seeded directly through the store (what ``ApprovalService.create`` writes:
the request with its policy snapshot and its ``created`` audit entry, in large transactions
for speed) with requests whose deadlines are spread evenly over two minutes, starting shortly
after seeding ends. Then the real ``signoff serve`` starts on it and the deadlines fall due.

Reported:

- lateness: decision time recorded by the sweeper minus the deadline, for every request
  (requests still pending when the run ends count with the lateness they had reached, so
  the figure is then a lower bound, marked ">="); and the lateness a waiting agent sees —
  when its long-poll answer arrives — for a sample of requests;
- memory: the process's resident set with every request pending, minus an idle process's
  (same config, empty database), per pending request;
- start to ready: from spawning the process to the first 200 from ``/readyz``.

Goals: p99 lateness < 1 s, < 2 KB per pending request, ready in < 5 s.

Run alone: .venv/bin/python -m bench.deadlines [--quick] [--count N] [--spread SECONDS]
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import bindparam, select, update

from approvals.machine import Status
from approvals.model import ApprovalRequest, new_request_id
from approvals.service import audit_created
from approvals.store import SqlStore, WriteTx
from approvals.tables import REQUESTS
from bench.harness import (
    HOST,
    Row,
    ServerProcess,
    bearer,
    free_port,
    local_client,
    percentile,
    run_alone,
    running,
    seed_agent_keys,
    signoff_serve,
    standard_arguments,
)
from bot.app import rules_from
from config import load_config
from signoff_client.canonical import payload_sha256

BENCHMARK = "3 Deadlines at scale"
GOAL_LATENESS = 1.0
GOAL_BYTES_PER_REQUEST = 2048
GOAL_READY = 5.0
AGENTS = [f"agent-{i}" for i in range(10)]
ACTION = "deploy.web"
SEED_BATCH = 5000
PLACEHOLDER_DEADLINE = datetime(2100, 1, 1, tzinfo=UTC)
MEMORY_SETTLE_SECONDS = 2.0
"""RSS is read this long after readiness, idle and loaded alike (the first sweep has run)."""

CONFIG = """\
version: 1
server: {{listen: "{host}:{port}", public_url: "http://{host}:{port}"}}
database: {{url: "sqlite:///{db}"}}
people:
  approver: {{}}
agents:
{agents}
policies:
  - name: default
    levels: [{{approvers: [approver], notify: [web], timeout: 30m}}]
    on_timeout: deny
"""


@dataclass(frozen=True)
class Sizes:
    count: int = 100_000
    spread: float = 120.0
    """Seconds over which the deadlines are spread."""
    lead: float = 15.0
    """Seconds from the end of seeding to the first deadline (the start happens in it)."""
    grace: float = 15.0
    """How long after the last deadline the run waits for stragglers."""
    samples: int = 50
    backlog: int = 20_000
    """Requests all due at the same moment, for the sweep rate."""


FULL = Sizes()
QUICK = Sizes(count=300, spread=2.0, lead=8.0, grace=5.0, samples=5, backlog=300)
GOAL_SWEEP_RATE = 5000.0
BACKLOG_WITHIN = 60.0


def measures(_sizes: Sizes) -> list[str]:
    return [
        "lateness, recorded",
        "lateness, seen by a waiting agent",
        "memory per pending request",
        "start to ready",
        "sweep rate, a backlog due at once",
    ]


def write_config(path: Path, db: Path, port: int) -> None:
    agents = "\n".join(f"  {agent}: {{max_open: 1000000}}" for agent in AGENTS)
    path.write_text(CONFIG.format(host=HOST, port=port, db=db, agents=agents), encoding="utf-8")


async def seed_pending(config_path: Path, count: int) -> list[tuple[str, str]]:
    """``count`` pending requests, written as ``ApprovalService.create`` writes them.

    Each request row (with its policy snapshot) and its ``created`` audit entry are the
    rows ``create`` would commit; here they go in with one multi-row insert per batch, and
    the audit entries are chained as ``WriteTx.append_audit`` chains them. Their
    deadline (also in the audit entry) is a placeholder until :func:`set_deadlines`, so that
    the real ones can be counted from when seeding ended, however long it took. Returns
    (request id, agent) in creation order.
    """
    config = load_config(config_path)
    rules = rules_from(config)
    store = SqlStore(config.settings.database.url)
    try:
        policy = rules.policies.select(ACTION, AGENTS[0], {})
        created_at = datetime.now(UTC)
        seeded: list[tuple[str, str]] = []
        for start in range(0, count, SEED_BATCH):
            requests = []
            for index in range(start, min(count, start + SEED_BATCH)):
                params = {"build": index}
                requests.append(
                    ApprovalRequest(
                        id=new_request_id(),
                        agent=AGENTS[index % len(AGENTS)],
                        action=ACTION,
                        title=f"Deploy web build {index}",
                        details="",
                        params=params,
                        payload_sha256=payload_sha256(ACTION, params),
                        requested_by=None,
                        policy=policy,
                        status=Status.PENDING,
                        level=0,
                        created_at=created_at,
                        deadline=PLACEHOLDER_DEADLINE,
                        next_due_at=PLACEHOLDER_DEADLINE,
                        next_remind_at=None,
                    )
                )
            await store.run(partial(_seed_batch, requests))
            seeded += [(request.id, request.agent) for request in requests]
        return seeded
    finally:
        await store.close()


def _seed_batch(requests: list[ApprovalRequest], tx: WriteTx) -> None:
    """Insert requests with their ``created`` audit entries, chained from the stored head."""
    tx.insert_requests(requests)
    for request in requests:
        audit_created(tx, request, request.created_at)


async def set_deadlines(
    database_url: str, request_ids: list[str], first: datetime, spread: float
) -> dict[str, datetime]:
    """Deadlines evenly from ``first`` over ``spread`` seconds, in the order given."""
    step = spread / max(1, len(request_ids) - 1)
    deadlines = {rid: first + timedelta(seconds=i * step) for i, rid in enumerate(request_ids)}
    store = SqlStore(database_url)
    try:

        def _change(tx: WriteTx) -> None:
            tx.conn.execute(
                update(REQUESTS)
                .where(REQUESTS.c.id == bindparam("rid"))
                .values(deadline=bindparam("due"), next_due_at=bindparam("due")),
                [{"rid": rid, "due": due} for rid, due in deadlines.items()],
            )

        await store.run(_change)
    finally:
        await store.close()
    return deadlines


@dataclass
class Outcomes:
    """Every seeded request's deadline and, when decided, its decision time."""

    deadlines: dict[str, datetime]
    decided: dict[str, datetime]


async def read_outcomes(database_url: str) -> Outcomes:
    store = SqlStore(database_url)
    try:
        async with store.read() as reader:
            rows = (
                await reader.conn.execute(
                    select(REQUESTS.c.id, REQUESTS.c.deadline, REQUESTS.c.decided_at)
                )
            ).all()
    finally:
        await store.close()
    return Outcomes(
        deadlines={row.id: row.deadline for row in rows},
        decided={row.id: row.decided_at for row in rows if row.decided_at is not None},
    )


async def decided_count(server: ServerProcess) -> int:
    """Requests this process has moved to a final state, from its Prometheus metrics."""
    async with local_client(base_url=server.base_url, timeout=10.0) as client:
        text = (await client.get("/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "signoff_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("status") != "pending":
                    total += sample.value
    return int(total)


async def sample_agent_view(
    server: ServerProcess,
    keys: dict[str, str],
    picks: list[tuple[str, str, datetime]],
    seen: list[float],
) -> None:
    """For each (request, agent, deadline): long-poll from just before the deadline and add
    answer arrival minus deadline, in seconds, to ``seen``."""
    async with local_client(base_url=server.base_url, timeout=120.0) as client:

        async def watch(request_id: str, agent: str, deadline: datetime) -> None:
            lead = (deadline - datetime.now(UTC)).total_seconds() - 1.0
            await asyncio.sleep(max(0.0, lead))
            while True:
                response = await client.get(
                    f"/v1/approvals/{request_id}", params={"wait": 60}, headers=bearer(keys[agent])
                )
                arrived = datetime.now(UTC)
                if response.status_code == 200 and response.json()["status"] != "pending":
                    seen.append((arrived - deadline).total_seconds())
                    return
                if response.status_code != 200:
                    raise RuntimeError(f"long-poll answered {response.status_code}")

        await asyncio.gather(*(watch(*pick) for pick in picks))


def _lateness_figure(values: list[float], censored: int, total: int) -> tuple[str, float]:
    ordered = sorted(values)
    p50, p99, worst = percentile(ordered, 0.5), percentile(ordered, 0.99), ordered[-1]
    bound = ">= " if censored else ""
    text = f"p50 {p50:.2f} s · p99 {bound}{p99:.2f} s · max {bound}{worst:.2f} s"
    if censored:
        text += f" ({total - censored:,} of {total:,} timed out by the end of the run)"
    else:
        text += f" ({total:,} requests)"
    return text, p99


async def run(sizes: Sizes, workdir: Path) -> list[Row]:
    # An idle process first: same config, empty database.
    idle_db, idle_config = workdir / "idle.db", workdir / "idle.yaml"
    port = free_port()
    write_config(idle_config, idle_db, port)
    idle = signoff_serve(idle_config, log_path=workdir / "idle.log", base_url=_url(port))
    async with running(idle):
        idle_ready = await idle.wait_ready()
        await asyncio.sleep(MEMORY_SETTLE_SECONDS)
        idle_rss = idle.rss_bytes()

    db, config = workdir / "loaded.db", workdir / "loaded.yaml"
    database_url = f"sqlite:///{db}"
    port = free_port()
    write_config(config, db, port)
    keys = await seed_agent_keys(database_url, AGENTS)
    seeding = time.perf_counter()
    seeded = await seed_pending(config, sizes.count)
    first_deadline = datetime.now(UTC) + timedelta(seconds=sizes.lead)
    deadlines = await set_deadlines(
        database_url, [rid for rid, _agent in seeded], first_deadline, sizes.spread
    )
    seed_seconds = time.perf_counter() - seeding
    last_deadline = max(deadlines.values())
    stride = max(1, len(seeded) // sizes.samples)
    picks = [(rid, agent, deadlines[rid]) for rid, agent in seeded[stride // 2 :: stride]]
    picks = picks[: sizes.samples]

    server = signoff_serve(config, log_path=workdir / "loaded.log", base_url=_url(port))
    async with running(server):
        ready = await server.wait_ready()
        await asyncio.sleep(MEMORY_SETTLE_SECONDS)
        loaded_rss = peak_rss = server.rss_bytes()
        seen: list[float] = []
        watchers = asyncio.create_task(sample_agent_view(server, keys, picks, seen))
        run_until = last_deadline + timedelta(seconds=sizes.grace)
        while datetime.now(UTC) < run_until:
            peak_rss = max(peak_rss, server.rss_bytes())
            if datetime.now(UTC) > last_deadline and await decided_count(server) >= sizes.count:
                break
            await asyncio.sleep(1.0)
        ended = datetime.now(UTC)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watchers, 5.0)
        stopping = time.perf_counter()
    stop_seconds = time.perf_counter() - stopping
    outcomes = await read_outcomes(database_url)
    sweep_rate = await _sweep_rate_row(sizes, workdir)
    return [
        *_lateness_rows(outcomes, ended, seen, len(picks)),
        _memory_row(idle_rss, loaded_rss, peak_rss, sizes.count),
        Row(
            BENCHMARK,
            "start to ready",
            f"{ready:.2f} s with {sizes.count:,} pending (idle {idle_ready:.2f} s; "
            f"seeding {seed_seconds:.0f} s; stop took {stop_seconds:.1f} s)",
            f"< {GOAL_READY:.0f} s",
            ready < GOAL_READY,
        ),
        sweep_rate,
    ]


async def _sweep_rate_row(sizes: Sizes, workdir: Path) -> Row:
    """``sizes.backlog`` requests that all fall due at one moment while signoff runs: the
    rate at which the sweeper times them out, from that moment to the last decision."""
    db, config = workdir / "backlog.db", workdir / "backlog.yaml"
    database_url = f"sqlite:///{db}"
    port = free_port()
    write_config(config, db, port)
    await seed_agent_keys(database_url, AGENTS)  # migrates the new database
    seeded = await seed_pending(config, sizes.backlog)
    due = datetime.now(UTC) + timedelta(seconds=sizes.lead)
    await set_deadlines(database_url, [rid for rid, _agent in seeded], due, 0.0)
    server = signoff_serve(config, log_path=workdir / "backlog.log", base_url=_url(port))
    async with running(server):
        await server.wait_ready()
        give_up = due + timedelta(seconds=BACKLOG_WITHIN)
        while datetime.now(UTC) < give_up:
            if await decided_count(server) >= sizes.backlog:
                break
            await asyncio.sleep(0.5)
    outcomes = await read_outcomes(database_url)
    decided = [outcomes.decided[rid] for rid in outcomes.deadlines if rid in outcomes.decided]
    measure = "sweep rate, a backlog due at once"
    goal = f">= {GOAL_SWEEP_RATE:,.0f}/s"
    if not decided:
        return Row(BENCHMARK, measure, "none timed out", goal, False)
    span = max((max(decided) - due).total_seconds(), 1e-3)
    rate = len(decided) / span
    figure = (
        f"{rate:,.0f} timeouts/s ({len(decided):,} of {sizes.backlog:,} decided "
        f"{span:.2f} s after they fell due)"
    )
    return Row(BENCHMARK, measure, figure, goal, rate >= GOAL_SWEEP_RATE)


def _lateness_rows(
    outcomes: Outcomes, ended: datetime, seen: list[float], sampled: int
) -> list[Row]:
    lateness: list[float] = []
    censored = 0
    for rid, deadline in outcomes.deadlines.items():
        decided = outcomes.decided.get(rid)
        if decided is None:
            censored += 1
            lateness.append((ended - deadline).total_seconds())
        else:
            lateness.append((decided - deadline).total_seconds())
    figure, p99 = _lateness_figure(lateness, censored, len(lateness))
    rows = [Row(BENCHMARK, "lateness, recorded", figure, "p99 < 1 s", p99 < GOAL_LATENESS)]
    measure = "lateness, seen by a waiting agent"
    if not seen:
        figure = f"no sampled request was answered by the end ({sampled} waiting)"
        rows.append(Row(BENCHMARK, measure, figure, "p99 < 1 s", False))
        return rows
    figure, p99 = _lateness_figure(seen, 0, len(seen))
    figure = figure.replace(" requests)", " sampled requests)")
    if len(seen) < sampled:
        figure += f"; {sampled - len(seen)} still waiting at the end"
    met = p99 < GOAL_LATENESS and len(seen) == sampled
    rows.append(Row(BENCHMARK, measure, figure, "p99 < 1 s", met))
    return rows


def _memory_row(idle_rss: int, loaded_rss: int, peak_rss: int, count: int) -> Row:
    per_request = (loaded_rss - idle_rss) / count
    return Row(
        BENCHMARK,
        "memory per pending request",
        f"{max(per_request, 0.0) / 1024:.2f} KB (RSS {idle_rss / 2**20:.0f} MB idle, "
        f"{loaded_rss / 2**20:.0f} MB with {count:,} pending, "
        f"{peak_rss / 2**20:.0f} MB peak while they time out)",
        "< 2 KB",
        per_request < GOAL_BYTES_PER_REQUEST,
    )


def _url(port: int) -> str:
    return f"http://{HOST}:{port}"


def main(argv: list[str] | None = None) -> None:
    parser = standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help="pending requests (default 100,000)")
    parser.add_argument("--spread", type=float, help="seconds the deadlines spread over")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.count:
        sizes = replace(sizes, count=args.count, samples=min(sizes.samples, args.count))
    if args.spread:
        sizes = replace(sizes, spread=args.spread)
    run_alone(run, sizes)


if __name__ == "__main__":
    main()
