"""F2: a chat platform down for minutes (503, then reset connections), the others unaffected.

The real Slack adapter talks to the fake Slack, which answers 503 and then resets every
connection for :data:`OUTAGE` of (manual) clock time; the real Telegram adapter talks to the
fake Bot API, which stays up. Measured: the retry delays of the Slack queue's head (capped
exponential backoff with jitter, RetryPolicy's production values), that every Telegram card
and edit went out in the first dispatcher round after it was queued, and that Slack drains
in creation order once it answers again.
"""

from __future__ import annotations

import re
import socket
import struct
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import select

from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher, RetryPolicy
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet
from approvals.service import ApprovalService, Rules
from approvals.tables import OUTBOX
from bot.runtime import Runtime
from tests.adapters.slack.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, start_adapter
from tests.adapters.telegram.conftest import GROUP, TelegramHarness
from tests.fakes.slack import FakeSlack, Fault
from tests.fakes.telegram import FakeBotApi
from tests.reliability.invariants import (
    by_platform,
    check_invariants,
    rendered_cards,
    slack_reader,
    telegram_reader,
)
from tests.world import make_directory

OUTAGE = timedelta(minutes=10)
"""How long Slack stays down, on the manual clock."""
REQUESTS = 5
SLACK_OPS = "slack:channel:C0OPS"
TELEGRAM_OPS = f"telegram:channel:{GROUP}"
SWEEP = timedelta(seconds=1)


class FailingSlack(FakeSlack):
    """The fake Slack, able to reset every connection (TCP RST) instead of answering."""

    resetting = False
    resets = 0

    async def _api(self, request: web.Request) -> web.Response:
        if not self.resetting:
            return await super()._api(request)
        self.resets += 1
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close sends RST, the way a crashed load balancer drops a connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        raise web.HTTPServiceUnavailable()


@pytest.fixture
def rules() -> Rules:
    level = Level(
        approvers=("alice", "bob"),
        notify=("ops-slack", "ops-telegram"),
        timeout=timedelta(hours=2),
    )
    policy = Policy(name="both", match=Match(), levels=(level,))
    return Rules(policies=PolicySet((policy,)), directory=make_directory())


async def test_F2_slack_down_for_minutes_backs_off_telegram_flows_and_slack_drains_in_order(
    store, runtime: Runtime, service: ApprovalService, clock
):
    """F2: 503s then connection resets from Slack for 10 minutes; Telegram unaffected."""
    slack_fake = FailingSlack(
        bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET
    )
    await slack_fake.start()
    telegram_fake = FakeBotApi()
    telegram_fake.add_group(GROUP, "ops")
    await telegram_fake.start()
    slack = await start_adapter(slack_fake, service, "http")
    telegram = TelegramHarness(mode="polling", fake=telegram_fake, runtime=runtime)
    try:
        async with telegram:
            assert telegram.adapter is not None
            retry = RetryPolicy()
            dispatcher = OutboxDispatcher(
                store, {"slack": slack, "telegram": telegram.adapter}, clock, retry=retry
            )
            outage_ends = clock.now() + OUTAGE
            slack_fake.fail_next("chat.postMessage", Fault(status=503), times=1000)
            ids: list[str] = []
            for n in range(REQUESTS):
                outcome = await service.create(
                    CreateCommand(agent="deploy-bot", action=f"deploy.svc{n}", title=f"Deploy {n}")
                )
                assert isinstance(outcome, Created)
                ids.append(outcome.request.id)
                await dispatcher.run_once()
                # Telegram got the card in the very round it was queued, Slack's queue waits.
                assert telegram_fake.card_for(outcome.request.id, GROUP) is not None
            await service.vote(VoteCommand(ids[0], "telegram", "100001", Verdict.APPROVE))
            await dispatcher.run_once()
            first_card = telegram_fake.card_for(ids[0], GROUP)
            assert first_card is not None
            assert "Approved by alice" in first_card.text  # edited at once, Slack or not

            delays: dict[int, timedelta] = {}  # attempt number -> the delay it was given
            first = await _slack_head(store)  # failed in the first round; the clock stood still
            delays[first.attempts] = first.next_attempt_at - clock.now()
            while clock.now() < outage_ends:
                if clock.now() >= outage_ends - OUTAGE / 2 and not slack_fake.resetting:
                    slack_fake.resetting = True  # the second half: connections reset
                head = await _slack_head(store)
                assert head.request_id == ids[0], "a later card overtook the queue's head"
                clock.set(max(clock.now(), head.next_attempt_at))
                assert await dispatcher.run_once() == 1
                failed = await _slack_head(store)
                assert failed.attempts == head.attempts + 1
                delays[failed.attempts] = failed.next_attempt_at - clock.now()
            slack_fake.resetting = False
            slack_fake._faults.clear()

            head = await _slack_head(store)
            clock.set(head.next_attempt_at)
            await dispatcher.drain()
            posted = slack_fake.posts_in("C0OPS")
            assert [_request_of(message.text, ids) for message in posted] == ids
            assert "Approved by alice" in posted[0].all_text  # the edit followed its send

            _assert_capped_exponential_with_jitter(delays, retry)
            assert slack_fake.resets > 0
            print(
                f"F2: Slack down {OUTAGE}, {len(delays)} failed attempts on the head row, "
                f"delays {[round(d.total_seconds(), 1) for d in delays.values()]} s; Telegram "
                f"cards and edits sent in the round they were queued; {len(posted)} Slack cards "
                "drained in order"
            )
            cards = await rendered_cards(
                store,
                by_platform(
                    slack=slack_reader(slack_fake), telegram=telegram_reader(telegram_fake)
                ),
            )
            report = await check_invariants(
                store, now=clock.now(), sweep_interval=SWEEP, accepted=ids, cards=cards
            )
            assert report.cards_checked == 2
            assert report.outbox == {"sent": 2 * REQUESTS + 2}
    finally:
        await slack.stop()
        if slack_fake.events is not None:
            await slack_fake.events.aclose()
        await slack_fake.close()
        await telegram_fake.close()


async def _slack_head(store):
    async with store.read() as reader:
        rows = await reader.conn.execute(
            select(OUTBOX)
            .where(OUTBOX.c.destination == SLACK_OPS, OUTBOX.c.state == "pending")
            .order_by(OUTBOX.c.id)
            .limit(1)
        )
        return rows.one()


def _request_of(text: str, ids: list[str]) -> str:
    found = re.search(r"Deploy (\d+)", text)
    assert found is not None, text
    return ids[int(found.group(1))]


def _assert_capped_exponential_with_jitter(
    delays: dict[int, timedelta], retry: RetryPolicy
) -> None:
    for attempt, delay in delays.items():
        ceiling = min(retry.max_delay, retry.base_delay * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
    capped = [n for n in delays if retry.base_delay * 2 ** (n - 1) >= retry.max_delay]
    assert capped, "the outage outlasted the growth of the backoff"
    distinct = {round(delay.total_seconds(), 3) for delay in delays.values()}
    assert len(distinct) == len(delays), "every delay is jittered"
