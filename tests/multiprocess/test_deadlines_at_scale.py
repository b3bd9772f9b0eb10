"""Two ``signoff serve`` processes sweep 1,000 deadlines that fall in the same few seconds.

Both processes take requests from agents, both sweep deadlines (``SKIP LOCKED``) and both
deliver the outbox (leases), against one fake Slack. Every request gets exactly one timeout
decision, and every outbox row reaches Slack exactly once: one card per request, one edit
per card.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import func, select, update

from approvals.store import SqlStore, WriteTx
from approvals.tables import AUDIT, DELIVERIES, OUTBOX, REQUESTS
from tests.multiprocess.conftest import (
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    Cluster,
    RoutedSlack,
    Timeline,
    agent_key,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres

REQUESTS_TOTAL = 1000
LANES = 200
"""Slack channels the requests are spread over: Slack takes one post a second per channel,
so 1,000 cards and 1,000 edits in one channel would take over half an hour."""
AGENTS = 20
"""Agent keys: each is held to bursts of 50 calls by the per-agent rate limit."""
DEADLINE_SPREAD = 3
"""Deadlines fall within this many seconds."""
CREATE_CONCURRENCY = 16


def lanes_config(database_url: str, api_url: str):
    def config(port: int) -> str:
        channels = "\n".join(f"  lane{n:03d}: {{slack: C0LANE{n:03d}}}" for n in range(LANES))
        policies = "\n".join(
            f'  - {{name: lane{n:03d}, match: {{action: "lane{n:03d}.*"}}, min_timeout: 1s, '
            f"levels: [{{approvers: [alice, bob], notify: [lane{n:03d}], timeout: 30m}}]}}"
            for n in range(LANES)
        )
        agents = "\n".join(f"  agent{n:02d}: {{max_open: 1000}}" for n in range(AGENTS))
        return f"""\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "{database_url}"}}
people:
  alice: {{slack: U0ALICE}}
  bob: {{slack: U0BOB}}
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
{agents}
policies:
{policies}
  - name: default
    levels: [{{approvers: [alice, bob], notify: [lane000], timeout: 30m}}]
"""

    return config


async def test_two_processes_time_out_1000_requests_once_each_and_send_each_row_once(
    slack: RoutedSlack, store: SqlStore, cluster: Cluster
):
    times = Timeline()
    times.mark("start")
    env = {"SLACK_BOT_TOKEN": SLACK_BOT_TOKEN, "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET}
    processes = [
        cluster.launch(name, lanes_config(cluster.database_url, slack.api_url_for(name)), env)
        for name in ("a", "b")
    ]
    keys = [await agent_key(store, f"agent{n:02d}") for n in range(AGENTS)]
    for process in processes:
        await process.until_ready()
    times.mark("ready")
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(api: aiohttp.ClientSession, number: int) -> str:
        process = processes[number % 2]
        async with (
            gate,
            api.post(
                f"{process.url}/v1/approvals",
                headers={"Authorization": f"Bearer {keys[number % AGENTS]}"},
                json={
                    "action": f"lane{number % LANES:03d}.deploy",
                    "title": f"Deploy #{number}",
                    "params": {"n": number},
                },
            ) as response,
        ):
            body = await response.json()
            assert response.status == 201, body
        return str(body["id"])

    # aiohttp rather than httpx: this process also runs the fake Slack, and the
    # lighter client leaves more of the two cores to the processes under test.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as api:
        ids = await asyncio.gather(*(create(api, number) for number in range(REQUESTS_TOTAL)))
    times.mark("created")
    assert len(set(ids)) == REQUESTS_TOTAL

    # The database holds every deadline (the sweepers find due requests there), so all 1,000
    # are made due within the same few seconds however long creating them took.
    first_deadline = datetime.now(UTC) + timedelta(seconds=3)

    def _change(tx: WriteTx) -> None:
        for second in range(DEADLINE_SPREAD):
            due = first_deadline + timedelta(seconds=second)
            tx.conn.execute(
                update(REQUESTS)
                .where(REQUESTS.c.id.in_(ids[second::DEADLINE_SPREAD]))
                .values(deadline=due, next_due_at=due)
            )

    await store.run(_change)
    last_deadline = first_deadline + timedelta(seconds=DEADLINE_SPREAD - 1)

    async def all_settled() -> bool:
        async with store.read() as reader:
            pending = (
                await reader.conn.execute(
                    select(func.count()).where(REQUESTS.c.status == "pending")
                )
            ).scalar_one()
            counts = await reader.outbox_counts()
        return pending == 0 and counts.get("pending", 0) == 0

    # Seconds on an otherwise idle 2-core machine; generous for a busy one.
    await wait_for(all_settled, within=300, poll=0.5)
    times.mark("settled")

    async with store.read() as reader:
        final_entries = (
            await reader.conn.execute(
                select(AUDIT.c.request_id, AUDIT.c.actor).where(
                    AUDIT.c.kind.in_(("decided", "expired", "cancelled"))
                )
            )
        ).all()
        decided = (
            await reader.conn.execute(
                select(REQUESTS.c.status, REQUESTS.c.deadline, REQUESTS.c.decided_at)
            )
        ).all()
        outbox = Counter(
            (row.kind, row.state)
            for row in await reader.conn.execute(select(OUTBOX.c.kind, OUTBOX.c.state))
        )
        cards = {
            (row.ref["channel"], row.ref["ts"]): row.request_id
            for row in await reader.conn.execute(select(DELIVERIES))
        }
        verification = await store.verify_audit()

    finals_per_request = Counter(row.request_id for row in final_entries)
    assert len(finals_per_request) == REQUESTS_TOTAL
    assert set(finals_per_request.values()) == {1}
    assert {row.actor for row in final_entries} == {"timeout"}
    assert Counter(row.status for row in decided) == {"denied": REQUESTS_TOTAL}
    assert all(row.decided_at >= row.deadline for row in decided)  # none before its time
    assert outbox == {("send", "sent"): REQUESTS_TOTAL, ("edit", "sent"): REQUESTS_TOTAL}
    assert verification.ok

    posts = [call for call in slack.calls_to("chat.postMessage") if call.error is None]
    edits = [call for call in slack.calls_to("chat.update") if call.error is None]
    assert len(posts) == REQUESTS_TOTAL
    assert len(cards) == REQUESTS_TOTAL
    edits_per_card = Counter((call.params["channel"], call.params["ts"]) for call in edits)
    assert set(edits_per_card) == set(cards)
    assert set(edits_per_card.values()) == {1}
    share = {name: slack.calls_by_process[(name, "chat.postMessage")] for name in ("a", "b")}
    swept_by = max(row.decided_at for row in decided) - last_deadline
    print(
        f"\n{REQUESTS_TOTAL} requests created in {times.between('ready', 'created'):.1f} s; "
        f"all timed out {swept_by.total_seconds():.1f} s after the last of their deadlines "
        f"(due within {DEADLINE_SPREAD} s); every card edited "
        f"{times.between('created', 'settled'):.1f} s after creation ended; whole test "
        f"{times.between('start', 'settled'):.1f} s. Final audit entries "
        f"{len(final_entries)}, posts {len(posts)} (by a {share['a']}, by b {share['b']}), "
        f"edits {len(edits)}"
    )
