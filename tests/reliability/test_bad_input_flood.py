"""B8: one agent sends a flood of requests; the API sheds it and approvers are not buried.

The whole application runs with the fake Slack as its chat platform and the production
per-agent API limit. Past the flood guard's cap (approvals.flood.CARDS_PER_MINUTE cards a
minute from one agent to one channel) the rest of the requests are gathered on one digest
card, edited as the count changes, and stay decidable in the web inbox.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from approvals.clock import ManualClock
from approvals.flood import CARDS_PER_MINUTE, WINDOW, digest_of
from approvals.machine import Status
from bot.app import PER_AGENT_LIMIT
from tests.fakes.slack import Message
from tests.reliability.app_world import SLACK_CHANNEL, AppWorld, app_world, fake_platforms
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.web.conftest import csrf_token_in

FLOOD = 1_000
"""Requests the agent sends, as fast as it can (RELIABILITY.md: 1,000 in a minute)."""
BATCH = 50
"""Requests the agent has in flight at once."""
SWEEP = timedelta(seconds=60)
_DIGEST_LINK = re.compile(r"/requests/(digest\.[A-Za-z0-9_-]+)")
_REQUEST_LINK = re.compile(r"/requests/([A-Za-z0-9_-]+)\|")


def digest_cards(world: AppWorld) -> list[Message]:
    assert world.slack is not None
    return [m for m in world.slack.posts_in(SLACK_CHANNEL) if "more requests from" in m.text]


def request_cards(world: AppWorld) -> list[Message]:
    assert world.slack is not None
    return [m for m in world.slack.posts_in(SLACK_CHANNEL) if m.buttons]


def request_id_of(card: Message) -> str:
    found = _REQUEST_LINK.search(card.all_text)
    assert found is not None, card.all_text[:300]
    return found.group(1)


async def gathered_ids(world: AppWorld) -> set[str]:
    """Requests whose delivery at the Slack channel is a place on a digest card."""
    gathered = set()
    for request_id in world.accepted:
        async with world.store.read() as reader:
            deliveries = await reader.deliveries(request_id)
        if any(digest_of(d.ref) for d in deliveries):
            gathered.add(request_id)
    return gathered


def digest_shows(world: AppWorld, count: int):
    async def check() -> bool:
        cards = digest_cards(world)
        return len(cards) == 1 and f"{count} more requests from agent deploy-bot" in cards[0].text

    return check


async def test_B8_a_flood_gets_429s_and_one_digest_card_instead_of_hundreds(
    tmp_path, record_property
):
    clock = ManualClock(datetime.now(UTC))
    async with (
        fake_platforms(telegram=False, discord=False) as (slack, _telegram, _discord),
        app_world(tmp_path, slack=slack, clock=clock, per_agent=PER_AGENT_LIMIT) as world,
    ):
        answers: Counter[int] = Counter()
        began = time.monotonic()
        for first in range(0, FLOOD, BATCH):
            batch = [world.create(title=f"Flood {n:04d}") for n in range(first, first + BATCH)]
            for response in await asyncio.gather(*batch):
                answers[response.status_code] += 1
                if response.status_code == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert response.json()["error"]["code"]
        took = time.monotonic() - began
        assert set(answers) == {201, 429}, answers
        accepted = len(world.accepted)
        assert accepted >= PER_AGENT_LIMIT.burst
        assert accepted <= PER_AGENT_LIMIT.burst + PER_AGENT_LIMIT.rate * took + 1

        # Approvers see the first cards one by one, then one digest for all the rest.
        gathered = accepted - CARDS_PER_MINUTE
        await wait_for(digest_shows(world, gathered), within=30)
        carded = [request_id_of(card) for card in request_cards(world)]
        assert len(carded) == len(set(carded)) == CARDS_PER_MINUTE
        assert set(carded) <= set(world.accepted)
        assert await gathered_ids(world) == set(world.accepted) - set(carded)
        [digest] = digest_cards(world)
        assert not digest.buttons
        figures = (
            f"B8: {FLOOD} creates in {took:.1f} s: answers {dict(answers)}; Slack got "
            f"{len(carded)} cards and 1 digest for {gathered} more"
        )
        print(figures)
        record_property("B8", figures)
        digest_id = _DIGEST_LINK.search(digest.all_text)
        assert digest_id is not None

        # Every gathered request is pending and decidable in the web inbox.
        for request_id in world.accepted:
            assert (await world.get(request_id)).status is Status.PENDING
        approver = await world.signed_in("p01")
        inbox = await approver.get("/")
        assert inbox.text.count("/requests/") >= accepted
        assert (await approver.get(f"/requests/{digest_id.group(1)}")).headers["location"] == "/"
        last = world.accepted[-1]
        page = await approver.get(f"/requests/{last}")
        decided = await approver.post(
            f"/requests/{last}/approve", data={"csrf_token": csrf_token_in(page.text)}
        )
        assert decided.status_code == 303
        assert (await world.get(last)).status is Status.APPROVED
        await wait_for(digest_shows(world, gathered - 1), within=30)

        # The flood is over: a minute later the agent's cards are posted one by one again.
        clock.advance(WINDOW + timedelta(seconds=1))

        async def allowed() -> bool:
            return (await world.create(title="After the flood")).status_code == 201

        await wait_for(allowed, within=10, poll=0.2)

        async def posted_alone() -> bool:
            return any(
                card.text == "Approval needed: After the flood" for card in request_cards(world)
            )

        await wait_for(posted_alone, within=30)
        assert len(request_cards(world)) == CARDS_PER_MINUTE + 1
        assert len(digest_cards(world)) == 1

        report = await check_invariants(
            world.store,
            now=clock.now(),
            sweep_interval=SWEEP,
            accepted=world.accepted,
            cards=await world.cards(),
        )
        assert report.requests == accepted + 1
