"""L5: Discord cards across many channels with rate-limit buckets in the way.

The real discord.py posts to the fake Discord, which keeps a bucket per channel (here one
request, reset after a quarter second: every answer says ``X-RateLimit-Remaining: 0``) and
can answer 429. discord.py must never spend a request on an exhausted bucket, and the
outbox must deliver everything in order. Sizes are module constants, scaled for seconds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from approvals.card import build_card
from approvals.clock import SystemClock
from approvals.directory import Destination, DestinationKind
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.service import Rules
from tests.adapters.discord.conftest import BOT_TOKEN, CHANNEL, discord_policies, start_adapter
from tests.fakes.discord import FakeDiscord, Fault
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.world import build_test_runtime, deliver_through, make_directory

SWEEP = timedelta(seconds=1)


@pytest.fixture(autouse=True)
def _discord_endpoints() -> Iterator[None]:
    """Put discord.py's process-wide REST base and gateway URL back after each test."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(bot_token=BOT_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def rules() -> Rules:
    return Rules(policies=discord_policies(), directory=make_directory())


async def test_L5_cards_across_channels_never_hit_an_exhausted_bucket(
    fake_discord, sqlite_store, rules
):
    """L5: every post answers X-RateLimit-Remaining: 0 (a bucket of one per
    channel, reset after 0.25 s); 6 channels x 4 cards; not one request before a reset."""
    channels = [str(310001 + n) for n in range(6)]
    per_channel, reset_after = 4, 0.25
    fake_discord.bucket_limit = 1
    fake_discord.bucket_reset_after = reset_after
    clock = SystemClock()
    service = build_test_runtime(sqlite_store, clock, rules).service
    adapter = await start_adapter(fake_discord, service)
    cards = []
    for n in range(per_channel):
        outcome = await service.create(
            CreateCommand("bot", "deploy.web", f"card {n}", params={"card": n})
        )
        assert isinstance(outcome, Created), outcome
        assert outcome.is_new, outcome
        cards.append(build_card(outcome.request))

    async def post_all(channel: str) -> None:
        for card in cards:
            await adapter.send(card, Destination("discord", DestinationKind.CHANNEL, channel))

    try:
        await asyncio.wait_for(asyncio.gather(*(post_all(c) for c in channels)), timeout=30)
    finally:
        await adapter.stop()

    calls = fake_discord.calls_to("create_message")
    assert [c.status for c in calls].count(429) == 0  # no invalid request at all
    assert len(calls) == len(channels) * per_channel
    by_channel = defaultdict(list)
    for call in calls:
        by_channel[call.channel_id].append(call.at)
    for channel in channels:
        times = by_channel[channel]
        assert len(times) == per_channel
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= reset_after - 0.02
        assert [m.content for m in fake_discord.cards_in(channel)] == [
            f"Approval needed: card {n}" for n in range(per_channel)
        ]
    # Channels are independent buckets: they were served side by side, not one after another.
    spread = max(c.at for c in calls) - min(c.at for c in calls)
    assert spread < per_channel * reset_after * len(channels) / 2
    report = await check_invariants(
        sqlite_store,
        now=clock.now(),
        sweep_interval=SWEEP,
        accepted=[card.request_id for card in cards],
    )
    assert report.requests == per_channel


async def test_L5_outbox_delivers_many_cards_in_order_with_a_429_in_between(
    fake_discord, sqlite_store, rules
):
    """L5: all cards delivered, in order, through the outbox, with discord.py waiting out a 429."""
    clock = SystemClock()
    runtime = build_test_runtime(sqlite_store, clock, rules)
    service = runtime.service
    adapter = await start_adapter(fake_discord, service, min_send_interval=timedelta(0))
    dispatcher = deliver_through(runtime, {"discord": adapter})
    ids = []
    for n in range(30):
        # Two agents: one agent's 21st card in a minute would join a digest (B8).
        outcome = await service.create(
            CreateCommand(f"bot-{n // 15}", "deploy.web", f"card {n:02d}", params={"card": n})
        )
        assert isinstance(outcome, Created), outcome
        assert outcome.is_new, outcome
        ids.append(outcome.request.id)
    fake_discord.fail_next("create_message", Fault(429, retry_after=0.2, via=True))
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run_forever(stop, idle=0.01))

    async def all_posted() -> bool:
        return len(fake_discord.cards_in(CHANNEL)) == 30

    try:
        await wait_for(all_posted, within=30)
    finally:
        stop.set()
        await running
        await adapter.stop()
    texts = [m.content for m in fake_discord.cards_in(CHANNEL)]
    assert texts == [f"Approval needed: card {n:02d}" for n in range(30)]
    report = await check_invariants(
        sqlite_store, now=clock.now(), sweep_interval=SWEEP, accepted=ids
    )
    assert report.outbox == {"sent": 30}
