"""L4: Telegram fan-out: many cards through the outbox to one group, and to many chats at
once, with Telegram's flood control in the way.

The real python-telegram-bot sends through the outbox to the fake Bot API, which records
when each message arrived and answers one with 429 and ``retry_after``. Telegram's limits
(one message a second per chat, 20 a minute per group, 30 a second overall) are scaled so
a run takes seconds; the sizes are module constants. Every run ends with the invariants.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from adapters.telegram.pacing import SendLimit
from approvals.clock import SystemClock
from approvals.directory import Destination, DestinationKind, Directory, Person
from approvals.flood import CARDS_PER_MINUTE
from approvals.policy import Level, Policy, PolicySet
from approvals.service import Rules
from approvals.store import SqlStore
from tests.adapters.telegram.conftest import GROUP, TelegramHarness, telegram_policies
from tests.fakes.telegram import FakeBotApi
from tests.reliability.invariants import check_invariants
from tests.world import build_test_runtime, make_directory

CARDS = 100
GROUP_LIMIT = SendLimit(40, timedelta(seconds=1))
"""Telegram's 20 a minute, scaled up so the test takes seconds."""
RETRY_AFTER = 2
SWEEP = timedelta(seconds=1)


def deploy_params(n: int) -> dict[str, str]:
    """The params of the ``n``-th deploy: a version of its own, so each card is a request of
    its own (an agent asking again for what it has pending gets that request back)."""
    return {"env": "prod", "version": f"1.2.{n}"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    api.add_group(GROUP, "ops")
    await api.start()
    yield api
    await api.close()


async def test_L4_100_cards_to_one_group_keep_the_limit_wait_out_a_429_and_arrive_in_order(
    fake: FakeBotApi, store: SqlStore
):
    clock = SystemClock()  # the outbox must really wait out retry_after
    runtime = build_test_runtime(store, clock, Rules(telegram_policies(), make_directory()))
    options = {
        # No per-chat pause: the outbox alone would then send ~130 a second, so the group
        # limit is what holds the pace.
        "min_send_interval": timedelta(0),
        "group_limit": GROUP_LIMIT,
        "overall_limit": SendLimit(1000, timedelta(seconds=1)),
    }
    fake.fail("sendMessage", 429, retry_after=RETRY_AFTER, after=30)
    async with TelegramHarness(
        mode="polling",
        fake=fake,
        runtime=runtime,
        adapter_options=options,
    ) as telegram:
        # From several agents: one agent's 21st card in a minute would join a digest (B8).
        requests = [
            await telegram.create(
                title=f"Deploy {n}",
                agent=f"agent-{n // CARDS_PER_MINUTE}",
                params=deploy_params(n),
            )
            for n in range(CARDS)
        ]
        stop = asyncio.Event()
        dispatcher = telegram.dispatcher
        running = asyncio.create_task(dispatcher.run_forever(stop, idle=0.02))
        try:
            await fake.until(lambda: len(fake.sent("sendMessage")) == CARDS, within=60)
        finally:
            stop.set()
            dispatcher.wake()
            await running

    sent = [c for c in fake.sent("sendMessage") if c.params["chat_id"] == GROUP]
    times = [c.at for c in sent]
    count, period = GROUP_LIMIT.count, GROUP_LIMIT.period.total_seconds()
    busiest = min(times[i + count] - times[i] for i in range(len(times) - count))
    assert busiest >= period, f"{count + 1} cards arrived within {busiest:.3f}s"

    [limited] = [c for c in fake.sent("sendMessage", ok_only=False) if c.status == 429]
    during_wait = [t for t in times if limited.at < t < limited.at + RETRY_AFTER]
    assert during_wait == [], f"sent {[t - limited.at for t in during_wait]}s after the 429"

    cards = fake.bot_messages(GROUP)
    assert [m.entities[-1]["url"].rsplit("/", 1)[1] for m in cards] == [r.id for r in requests]
    report = await check_invariants(
        store, now=clock.now(), sweep_interval=SWEEP, accepted=[r.id for r in requests]
    )
    assert report.outbox == {"sent": CARDS}


PRIVATE_CHATS = [300_000 + n for n in range(28)]
GROUPS = [-1_005_001, -1_005_002]
OVERALL_LIMIT = SendLimit(20, timedelta(seconds=1))
PER_CHAT = timedelta(milliseconds=300)


def fan_out_rules() -> Rules:
    """One policy whose cards go to 28 private chats and 2 groups at once."""
    chats = [*PRIVATE_CHATS, *GROUPS]
    channels = {
        f"chat-{chat}": (Destination("telegram", DestinationKind.CHANNEL, str(chat)),)
        for chat in chats
    }
    directory = Directory(
        people={"alice": Person("alice", {"telegram": "100001"})},
        channels=channels,
        platforms=frozenset({"telegram"}),
    )
    policy = Policy(
        name="everyone",
        levels=(Level(approvers=("alice",), notify=tuple(channels), timeout=timedelta(hours=1)),),
    )
    return Rules(policies=PolicySet((policy,)), directory=directory)


async def test_L4_fan_out_to_many_chats_holds_the_overall_per_chat_and_group_limits(
    fake: FakeBotApi, store: SqlStore
):
    for chat in PRIVATE_CHATS:
        fake.add_user(chat, f"Person {chat}")
    for chat in GROUPS:
        fake.add_group(chat, f"group {chat}")
    clock = SystemClock()
    runtime = build_test_runtime(store, clock, fan_out_rules())
    options = {
        "min_send_interval": PER_CHAT,
        "group_limit": SendLimit(2, timedelta(seconds=1)),
        "overall_limit": OVERALL_LIMIT,
    }
    fake.fail("sendMessage", 429, retry_after=1, after=10)
    async with TelegramHarness(
        mode="polling",
        fake=fake,
        runtime=runtime,
        adapter_options=options,
    ) as telegram:
        requests = [
            await telegram.create(title=f"Deploy {n}", params=deploy_params(n)) for n in range(3)
        ]
        stop = asyncio.Event()
        dispatcher = telegram.dispatcher
        running = asyncio.create_task(dispatcher.run_forever(stop, idle=0.02))
        total = 3 * (len(PRIVATE_CHATS) + len(GROUPS))
        try:
            await fake.until(lambda: len(fake.sent("sendMessage")) == total, within=60)
        finally:
            stop.set()
            dispatcher.wake()
            await running

    times = sorted(c.at for c in fake.sent("sendMessage"))
    count, period = OVERALL_LIMIT.count, OVERALL_LIMIT.period.total_seconds()
    busiest = min(times[i + count] - times[i] for i in range(len(times) - count))
    assert busiest >= period, f"{count + 1} messages went out within {busiest:.3f}s"
    [limited] = [c for c in fake.sent("sendMessage", ok_only=False) if c.status == 429]
    quiet = [
        c.at - limited.at
        for c in fake.sent("sendMessage")
        if c.params["chat_id"] == limited.params["chat_id"] and limited.at < c.at < limited.at + 1
    ]
    assert quiet == [], "the limited chat got messages before retry_after passed"
    for chat in [*PRIVATE_CHATS, *GROUPS]:
        cards = fake.bot_messages(chat)
        assert [m.entities[-1]["url"].rsplit("/", 1)[1] for m in cards] == [r.id for r in requests]
        at = sorted(c.at for c in fake.sent("sendMessage") if c.params["chat_id"] == chat)
        gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
        assert min(gaps) >= PER_CHAT.total_seconds(), f"chat {chat}: {gaps}"
        if chat in GROUPS:
            assert at[2] - at[0] >= 1, f"group {chat}: 3 cards within {at[2] - at[0]}s"
    report = await check_invariants(
        store, now=clock.now(), sweep_interval=SWEEP, accepted=[r.id for r in requests]
    )
    assert report.outbox == {"sent": total}
