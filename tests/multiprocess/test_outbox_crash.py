"""kill -9 in the middle of an outbox batch: the other process delivers it after the lease.

Two processes share the outbox. Cards are posted, then every request is cancelled, which
queues one edit per card; the fake Slack applies the edits but keeps its answers back, so
the process that claimed the batch is killed with every edit in flight. Once the lease (made
short for this test through the test-only environment variable) runs out, the survivor
sends those rows again: every row is delivered, and the only duplicates are re-sent edits,
at most one per killed in-flight call, never a second card.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from approvals.store import SqlStore, WriteTx
from approvals.tables import DELIVERIES, DESTINATIONS, OUTBOX
from bot.app import TEST_OUTBOX_LEASE_ENV
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

CARDS = 20
LEASE_SECONDS = 12.0
"""Short enough for a quick test, long enough that a held answer released within a second
or two stays well inside the send timeout (half the lease)."""


def config_for(database_url: str, api_url: str):
    def config(port: int) -> str:
        channels = "\n".join(f"  lane{n:02d}: {{slack: C0LANE{n:02d}}}" for n in range(CARDS))
        policies = "\n".join(
            f'  - {{name: lane{n:02d}, match: {{action: "lane{n:02d}.*"}}, '
            f"levels: [{{approvers: [alice], notify: [lane{n:02d}], timeout: 30m}}]}}"
            for n in range(CARDS)
        )
        return f"""\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "{database_url}"}}
people:
  alice: {{slack: U0ALICE}}
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
  deploy-bot: {{}}
policies:
{policies}
  - name: default
    levels: [{{approvers: [alice], notify: [lane00], timeout: 30m}}]
"""

    return config


async def pause_channels(store: SqlStore, *, until: datetime) -> None:
    def _change(tx: WriteTx) -> None:
        tx.conn.execute(update(DESTINATIONS).values(not_before=until))

    await store.run(_change)


async def outbox_rows(store: SqlStore) -> Counter[tuple[str, str]]:
    async with store.read() as reader:
        rows = await reader.conn.execute(select(OUTBOX.c.kind, OUTBOX.c.state))
        return Counter((row.kind, row.state) for row in rows)


async def test_rows_of_a_killed_process_are_delivered_after_the_lease_as_edits(
    slack: RoutedSlack, store: SqlStore, cluster: Cluster
):
    env = {
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        TEST_OUTBOX_LEASE_ENV: str(LEASE_SECONDS),
    }
    processes = {
        name: cluster.launch(name, config_for(cluster.database_url, slack.api_url_for(name)), env)
        for name in ("a", "b")
    }
    for process in processes.values():
        await process.until_ready()
    key = await agent_key(store, "deploy-bot")
    headers = {"Authorization": f"Bearer {key}"}
    times = Timeline()
    async with httpx.AsyncClient(timeout=30) as api:
        ids = []
        for number in range(CARDS):
            process = processes["ab"[number % 2]]
            response = await api.post(
                f"{process.url}/v1/approvals",
                headers=headers,
                json={"action": f"lane{number:02d}.deploy", "title": f"Deploy #{number}"},
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])

        async def cards_posted() -> bool:
            return (await outbox_rows(store)) == {("send", "sent"): CARDS}

        await wait_for(cards_posted, within=30)

        # Every channel is paused (as after a Retry-After) while the edits are queued, and
        # unpaused once all are there, so that they go out in one batch: a dispatcher waits
        # for its whole batch, so a held call would otherwise hold back edits queued after
        # it until the send timeout.
        await pause_channels(store, until=datetime.now(UTC) + timedelta(hours=1))
        slack.hold("chat.update")
        await asyncio.gather(
            *(
                api.post(f"{processes['ab'[n % 2]].url}/v1/approvals/{rid}/cancel", headers=headers)
                for n, rid in enumerate(ids)
            )
        )

        async def edits_queued() -> bool:
            return (await outbox_rows(store))[("edit", "pending")] == CARDS

        await wait_for(edits_queued, within=30)
        await pause_channels(store, until=datetime.now(UTC))
        await wait_for(lambda: _true(len(slack.held) == CARDS), within=30, poll=0.01)
    in_flight = Counter(call.process for call in slack.held)
    victim_name = max(in_flight, key=lambda name: in_flight[name])
    survivor_name = "b" if victim_name == "a" else "a"
    victim = processes[victim_name]
    times.mark("killed")
    await victim.kill()
    slack.release(survivor_name)
    killed_in_flight = in_flight[victim_name]

    async def all_sent() -> bool:
        rows = await outbox_rows(store)
        return rows == {("send", "sent"): CARDS, ("edit", "sent"): CARDS}

    await wait_for(all_sent, within=LEASE_SECONDS + 30, poll=0.1)
    times.mark("delivered")

    async with store.read() as reader:
        cards = {
            (row.ref["channel"], row.ref["ts"]): row.request_id
            for row in await reader.conn.execute(select(DELIVERIES))
        }
    posts = [call for call in slack.calls_to("chat.postMessage") if call.error is None]
    edits = Counter(
        (call.params["channel"], call.params["ts"])
        for call in slack.calls_to("chat.update")
        if call.error is None
    )
    duplicates = sum(count - 1 for count in edits.values())
    recovery = times.between("killed", "delivered")
    print(
        f"\nkilled {victim_name} with {killed_in_flight} of {CARDS} edits in flight; every row "
        f"delivered {recovery:.1f} s later (lease {LEASE_SECONDS:.0f} s); duplicate edits "
        f"{duplicates}, new cards 0 (posts {len(posts)})"
    )
    assert killed_in_flight >= 1
    assert len(posts) == CARDS  # not one card more: re-sent rows are edits
    assert set(edits) == set(cards)
    assert set(edits.values()) <= {1, 2}
    assert duplicates <= killed_in_flight
    for (channel, ts), _request_id in cards.items():
        assert "cancelled" in slack.messages[(channel, ts)].all_text.lower()
    # The survivor took the killed rows over only once their lease had run out.
    assert recovery >= LEASE_SECONDS - 1.0


async def _true(value: bool) -> bool:
    return value
