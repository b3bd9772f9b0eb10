"""L3: a thousand cards to one Slack channel, and a 429 with Retry-After on the way.

The real Slack adapter (slack_sdk) posts through the outbox to the fake Slack, which answers
the 10th ``chat.postMessage`` with 429 and a ``Retry-After``. Sizes are scaled for a 2-core
machine: 500 cards instead of 1,000 (each costs two write transactions and a post), a
per-channel interval of 10 ms instead of Slack's one second, and a Retry-After of 3 s
instead of 30 s. The cards come from many agents so
that the flood guard (at most 20 cards a minute from one agent to one channel, B8) does not
gather them: this scenario is about pacing, not about one agent's flood.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from approvals.clock import SystemClock
from approvals.flood import CARDS_PER_MINUTE
from approvals.model import CreateCommand
from approvals.outbox import OutboxDispatcher, RetryPolicy
from approvals.outcomes import Created
from approvals.service import Rules
from approvals.store import SqlStore
from tests.adapters.slack.conftest import (
    APP_TOKEN,
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    slack_policies,
    start_adapter,
)
from tests.fakes.slack import FakeSlack, Fault
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.world import build_test_runtime, make_directory

CARDS = 500
"""Cards to the one channel (RELIABILITY.md: 1,000; halved for a 2-core machine)."""
LIMITED_AT = 10
"""The ``chat.postMessage`` call that gets the 429."""
RETRY_AFTER = 3
"""Seconds (Slack's own example is 30; scaled down)."""
INTERVAL = timedelta(milliseconds=10)
"""The per-channel pace (Slack's 1 s, scaled down)."""
AGENTS = CARDS // CARDS_PER_MINUTE


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await fake.start()
    yield fake
    await fake.close()


@pytest.mark.slow
async def test_L3_slack_429_retry_after_pauses_the_channel(
    fake_slack: FakeSlack, sqlite_store: SqlStore
):
    clock = SystemClock()
    rules = Rules(slack_policies(), make_directory())
    service = build_test_runtime(sqlite_store, clock, rules).service
    adapter = await start_adapter(fake_slack, service, "http", min_send_interval=INTERVAL)
    dispatcher = OutboxDispatcher(
        sqlite_store,
        {"slack": adapter},
        clock,
        retry=RetryPolicy(base_delay=timedelta(milliseconds=100)),
    )
    fake_slack.fail_at(
        "chat.postMessage", LIMITED_AT, Fault(429, "ratelimited", retry_after=RETRY_AFTER)
    )
    ids = []
    for n in range(CARDS):
        outcome = await service.create(
            CreateCommand(
                agent=f"agent-{n % AGENTS:02d}",
                action="deploy.web",
                title=f"card {n:03d}",
                params={"card": n},
            )
        )
        assert isinstance(outcome, Created), outcome
        assert outcome.is_new, outcome
        ids.append(outcome.request.id)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run_forever(stop, idle=0.01))

    async def all_posted() -> bool:
        return len(fake_slack.posts_in(CHANNEL)) == CARDS

    try:
        await wait_for(all_posted, within=240)
    finally:
        stop.set()
        await running
        await adapter.stop()
        assert fake_slack.events is not None
        await fake_slack.events.aclose()

    calls = fake_slack.calls_to("chat.postMessage")
    assert len(calls) == CARDS + 1  # the refused one was sent again, nothing else twice
    assert [c.status for c in calls].index(429) == LIMITED_AT - 1
    refused = calls[LIMITED_AT - 1]
    # Nothing went to the channel while Slack's Retry-After ran.
    assert not [c for c in calls if refused.at < c.at < refused.at + RETRY_AFTER]
    # The per-channel pace held between any two posts (a few ms of timing slack: the outbox
    # counts the interval from the moment it starts a send).
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert min(gaps) >= INTERVAL.total_seconds() - 0.005
    # All delivered, in the order the requests were made.
    texts = [m.text for m in fake_slack.posts_in(CHANNEL)]
    assert texts == [f"Approval needed: card {n:03d}" for n in range(CARDS)]
    report = await check_invariants(
        sqlite_store, now=clock.now(), sweep_interval=timedelta(seconds=1), accepted=ids
    )
    assert report.outbox == {"sent": CARDS}
