"""`signoff status`: the figures it reports match a seeded database exactly (SQLite and
PostgreSQL), and adapter health comes from the running server's /readyz."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from approvals.audit import AuditKind
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.store import WriteTx
from approvals.tables import OUTBOX
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.status import collect_status, render
from config import load_config_text
from tests.fakes.recording import RecordingAdapter
from tests.world import deliver_through

SIGNOFF = Path(sys.executable).with_name("signoff")
T0_PLUS_16M = timedelta(minutes=16)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config_text(database_url: str, port: int) -> str:
    return f"""\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "{database_url}"}}
people: {{alice: {{}}}}
policies:
  - name: default
    levels: [{{approvers: [alice], notify: [web], timeout: 30m}}]
"""


async def seed(runtime, clock):
    """A database with requests in every state, escalations, and outbox rows both waiting
    and dead. Uses the standard rules of tests/world.py."""
    service = runtime.service
    t0 = clock.now()

    async def create(action, **extra):
        outcome = await service.create(
            CreateCommand(agent="deploy-bot", action=action, title=action, **extra)
        )
        return outcome.request

    await create("users.read")  # read-only: approved at once
    await create("db.drop_database")  # forbidden: denied at once
    prod = [await create("db.migrate", params={"env": "prod", "n": n}) for n in range(3)]
    await create("cache.flush")  # expiring: times out after 10 minutes
    await service.vote(VoteCommand(prod[2].id, "slack", "U0ALICE", Verdict.DENY, reason="not now"))
    # Slack delivers; Telegram and Discord have no adapter, so their cards are dead letters.
    dispatcher = deliver_through(runtime, {"slack": RecordingAdapter("slack")})
    await dispatcher.drain()

    clock.advance(T0_PLUS_16M)
    await service.process_due()  # prod-db escalates to level 2; cache.flush expires
    defaults = [await create("deploy.web", params={"n": n}) for n in range(3)]
    await service.cancel(defaults[2].id, "deploy-bot")
    await create("docs.publish")  # lenient: the web inbox only, nothing to post

    def _change(tx: WriteTx) -> None:
        tx.append_audit(
            AuditKind.CONFIG_LOADED,
            at=clock.now(),
            actor="signoff",
            data={"source": "seeded.yaml", "sha256": "ab" * 32},
        )

    await runtime.store.run(_change)
    return t0


EXPECTED_PENDING = [
    # (policy, level, count, next due after t0, final deadline after t0)
    ("default", 0, 2, timedelta(minutes=46), timedelta(minutes=46)),
    ("lenient", 0, 1, timedelta(minutes=26), timedelta(minutes=26)),
    ("prod-db", 1, 2, timedelta(minutes=75), timedelta(minutes=75)),
]
EXPECTED_OUTBOX = {
    # slack: 2 escalation edits, 3 new default cards, 1 edit for the cancelled one
    "slack": {"pending": 6, "dead": 0},
    # telegram: 2 escalation edits waiting; the 3 first cards and the denial's edit are dead
    "telegram": {"pending": 2, "dead": 4},
    # discord: 2 direct messages to carol at level 2, 1 edit of the expired card; 1 dead
    "discord": {"pending": 3, "dead": 1},
}


async def counted_directly(store):
    """The same figures by plain reads, to hold the report against."""
    async with store.read() as reader:
        pending = await reader.list_requests(status=Status.PENDING, limit=1000)
        rows = (await reader.conn.execute(select(OUTBOX.c.destination, OUTBOX.c.state))).all()
    groups = Counter((request.policy.name, request.level) for request in pending)
    outbox = Counter((destination.split(":", 1)[0], state) for destination, state in rows)
    return groups, outbox


async def test_status_counts_match_the_seeded_database(store, runtime, clock):
    t0 = await seed(runtime, clock)

    report = await collect_status(
        load_config_text(config_text(store.url, free_port()), "status.yaml"), store, clock
    )

    assert [
        (g.policy, g.level, g.count, g.next_due_at - t0, g.earliest_deadline - t0)
        for g in report.pending
    ] == EXPECTED_PENDING
    data = report.to_json()
    assert data["pending"]["total"] == 5
    assert {
        platform: {"pending": row["pending"], "dead": row["dead"]}
        for platform, row in data["outbox"]["platforms"].items()
    } == EXPECTED_OUTBOX
    assert data["outbox"]["pending"] == 11
    assert data["outbox"]["dead"] == 5
    assert data["pending"]["groups"][1]["next_due_in_seconds"] == 600.0  # lenient, 10m from now
    groups, outbox = await counted_directly(store)
    assert {(g.policy, g.level): g.count for g in report.pending} == dict(groups)
    for row in report.outbox:
        assert (row.pending, row.dead) == (
            outbox[row.platform, "pending"],
            outbox[row.platform, "dead"],
        )
    assert data["last_config_load"]["source"] == "seeded.yaml"
    assert data["last_config_load"]["sha256"] == "ab" * 32
    assert data["server"]["reachable"] is False
    assert data["server"]["error"].startswith("server not reachable")

    text = render(report)
    assert "pending requests: 5" in text
    assert "outbox: 11 waiting, 5 dead letters" in text
    assert "server: server not reachable" in text
    assert "last config load: seeded.yaml" in text


async def test_status_json_command_reports_the_seeded_counts(store, runtime, clock, tmp_path):
    t0 = await seed(runtime, clock)
    config_file = tmp_path / "status.yaml"
    config_file.write_text(config_text(store.url, free_port()), encoding="utf-8")
    await store.close()  # the command is the only client now

    result = subprocess.run(
        [str(SIGNOFF), "status", "--json", "--config", str(config_file)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "SIGNOFF_CONFIG"},
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(g["policy"], g["level"], g["count"]) for g in data["pending"]["groups"]] == [
        (policy, level, count) for policy, level, count, _, _ in EXPECTED_PENDING
    ]
    assert [g["earliest_deadline"] for g in data["pending"]["groups"]] == [
        (t0 + deadline).isoformat() for *_, deadline in EXPECTED_PENDING
    ]
    assert {
        platform: {"pending": row["pending"], "dead": row["dead"]}
        for platform, row in data["outbox"]["platforms"].items()
    } == EXPECTED_OUTBOX
    assert data["server"]["reachable"] is False
    assert data["last_config_load"]["sha256"] == "ab" * 32


async def test_status_takes_adapter_health_from_the_running_servers_readyz(tmp_path):
    port = free_port()
    loaded = load_config_text(config_text(f"sqlite:///{tmp_path / 'live.db'}", port), "live.yaml")
    runtime = build_runtime(
        loaded, AppOptions(adapters={"slack": RecordingAdapter("slack", healthy=False)})
    )
    app = build_http_app(runtime)
    await runtime.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            report = await collect_status(loaded, runtime.store, runtime.service.clock, http=http)
    finally:
        await runtime.stop()

    assert report.server.reachable is True
    assert report.server.url == f"http://127.0.0.1:{port}/readyz"
    assert report.server.status == "not ready"
    assert report.server.checks["database"] == "ok"
    assert report.server.checks["slack"] == "unhealthy"
    assert report.server.checks["web"] == "ok"
    assert report.last_config_load is not None
    assert report.last_config_load.data["source"] == "live.yaml"
    text = render(report)
    assert f"server: not ready (http://127.0.0.1:{port}/readyz)" in text
