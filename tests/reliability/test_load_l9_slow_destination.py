"""L9: one destination slow or stuck, every other destination on time.

Two ways a destination holds up: a webhook receiver that takes callbacks and does not
answer (60 of them held open for up to 10 s), and a Slack channel paused by a 429 with
``Retry-After``. The outbox dispatcher runs as in production (``run_forever``, woken by
each committed change); the real webhook sender posts to receivers on 127.0.0.1, the real
Slack and Telegram adapters talk to their fake platforms. Measured: from the commit of a
decision (or a new request) to its arrival at another destination, which must stay under
a second while the slow one is stuck; then the slow one drains in order once it recovers.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import select

from approvals.access import AccessStore
from approvals.egress import EgressPolicy
from approvals.model import CreateCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.policy import AutoDecision, Level, Match, Policy, PolicySet
from approvals.receipts import ReceiptSigner
from approvals.service import ApprovalService, Rules
from approvals.tables import OUTBOX
from approvals.webhooks import WebhookSender
from bot.runtime import Runtime
from tests.adapters.slack.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, start_adapter
from tests.adapters.telegram.conftest import GROUP, TelegramHarness
from tests.fakes.recording import serve_on_loopback
from tests.fakes.slack import FakeSlack, Fault
from tests.fakes.telegram import FakeBotApi
from tests.waiting import wait_for
from tests.world import make_directory

STUCK_CALLBACKS = 60
HOLD_SECONDS = 10.0
"""How long the stuck receiver holds each callback at most (it is released earlier once
the measurement is done)."""
ON_TIME_SAMPLES = 20
LATE_LIMIT_SECONDS = 1.0


@pytest.fixture
def rules() -> Rules:
    approve_at_once = Policy(
        name="auto",
        match=Match(actions=("auto.*",)),
        decision=AutoDecision.APPROVE,
        levels=(Level(approvers=("alice",), notify=("web",), timeout=timedelta(hours=1)),),
    )
    chat = Policy(
        name="chat",
        match=Match(),
        levels=(
            Level(
                approvers=("alice", "bob"),
                notify=("ops-slack", "ops-telegram"),
                timeout=timedelta(hours=2),
            ),
        ),
    )
    return Rules(policies=PolicySet((approve_at_once, chat)), directory=make_directory())


@dataclass
class Receivers:
    """A stuck receiver (``/stuck/N`` holds until released) and a healthy one (``/ok/N``)."""

    base_url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    stuck_answered: list[int] = field(default_factory=list)
    arrived: dict[int, float] = field(default_factory=dict)

    async def stuck(self, request: web.Request) -> web.Response:
        await request.read()
        self.held += 1
        try:
            await asyncio.wait_for(self.release.wait(), HOLD_SECONDS)
        except TimeoutError:
            return web.Response(status=503, text="still busy")
        finally:
            self.held -= 1
        self.stuck_answered.append(int(request.match_info["n"]))
        return web.Response(status=204)

    async def ok(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived.setdefault(int(request.match_info["n"]), time.monotonic())
        return web.Response(status=204)


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    hooks = Receivers()
    app = web.Application()
    app.router.add_post("/stuck/{n}", hooks.stuck)
    app.router.add_post("/ok/{n}", hooks.ok)
    runner, hooks.base_url = await serve_on_loopback(app)
    yield hooks
    hooks.release.set()
    await runner.cleanup()


@dataclass
class Running:
    """The dispatcher's loop in the background, and the event that stops it."""

    stop: asyncio.Event
    task: asyncio.Task[None]


async def _run(dispatcher: OutboxDispatcher, service: ApprovalService) -> Running:
    stop = asyncio.Event()
    service.subscribe(lambda _request: dispatcher.wake())
    task = asyncio.create_task(dispatcher.run_forever(stop, idle=0.05))
    return Running(stop, task)


async def _stop(running: Running) -> None:
    running.stop.set()
    await running.task


async def wait_until(condition: Callable[[], object], *, within: float) -> None:
    """Wait for ``condition`` (a plain or an async check), polling every 5 ms."""

    async def check() -> object:
        result = condition()
        return await result if inspect.isawaitable(result) else result

    await wait_for(check, within=within, poll=0.005)


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def test_L9_a_stuck_webhook_receiver_delays_no_other_agents_webhook(
    store, service: ApprovalService, clock, receivers: Receivers
):
    sender = WebhookSender(
        AccessStore(store, clock),
        ReceiptSigner(store, clock),
        clock,
        egress=EgressPolicy(["127.0.0.1/32"]),  # the receivers listen on loopback
    )
    dispatcher = OutboxDispatcher(store, {}, clock, webhooks=sender)
    running = await _run(dispatcher, service)
    try:
        for n in range(STUCK_CALLBACKS):
            outcome = await service.create(
                CreateCommand(
                    agent="slow-agent",
                    action="auto.deploy",
                    title=f"Deploy {n}",
                    callback_url=f"{receivers.base_url}/stuck/{n}",
                )
            )
            assert isinstance(outcome, Created)
        await wait_until(lambda: receivers.held == STUCK_CALLBACKS, within=HOLD_SECONDS / 2)

        lateness: list[float] = []
        for n in range(ON_TIME_SAMPLES):
            decided_at = time.monotonic()
            outcome = await service.create(
                CreateCommand(
                    agent="other-agent",
                    action="auto.restart",
                    title=f"Restart {n}",
                    callback_url=f"{receivers.base_url}/ok/{n}",
                )
            )
            assert isinstance(outcome, Created)

            def arrived(n: int = n) -> bool:
                return n in receivers.arrived

            await wait_until(arrived, within=HOLD_SECONDS / 2)
            lateness.append(receivers.arrived[n] - decided_at)
        assert receivers.held == STUCK_CALLBACKS, "the stuck receiver let go during the test"
        print(
            f"L9 webhooks: {STUCK_CALLBACKS} callbacks held by one receiver; another agent's "
            f"{ON_TIME_SAMPLES} webhooks arrived p50 {sorted(lateness)[len(lateness) // 2]:.3f} s, "
            f"p99 {_p99(lateness):.3f} s, max {max(lateness):.3f} s after the decision"
        )
        assert _p99(lateness) < LATE_LIMIT_SECONDS

        receivers.release.set()
        await wait_until(
            lambda: len(receivers.stuck_answered) == STUCK_CALLBACKS, within=HOLD_SECONDS
        )
        await wait_until(lambda: _all_sent(store), within=HOLD_SECONDS)
    finally:
        await _stop(running)


async def _all_sent(store) -> bool:
    async with store.read() as reader:
        states = (await reader.conn.execute(select(OUTBOX.c.state))).scalars().all()
    return bool(states) and set(states) == {"sent"}


async def test_L9_a_slack_channel_paused_by_a_429_delays_no_telegram_card(
    store, runtime: Runtime, service: ApprovalService, clock
):
    slack_fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await slack_fake.start()
    telegram_fake = FakeBotApi()
    telegram_fake.add_group(GROUP, "ops")
    await telegram_fake.start()
    slack = await start_adapter(slack_fake, service, "http")
    telegram = TelegramHarness(mode="polling", fake=telegram_fake, runtime=runtime)
    try:
        async with telegram:
            assert telegram.adapter is not None
            dispatcher = OutboxDispatcher(
                store, {"slack": slack, "telegram": telegram.adapter}, clock
            )
            # The first card to Slack is answered 429 with Retry-After: 30 s. The manual
            # clock stands still, so the channel stays paused for the whole measurement.
            slack_fake.fail_next(
                "chat.postMessage", Fault(status=429, error="ratelimited", retry_after=30)
            )
            running = await _run(dispatcher, service)
            try:
                ids: list[str] = []
                lateness: list[float] = []
                for n in range(ON_TIME_SAMPLES):
                    created_at = time.monotonic()
                    outcome = await service.create(
                        CreateCommand(agent="deploy-bot", action=f"deploy.svc{n}", title=f"Svc {n}")
                    )
                    assert isinstance(outcome, Created)
                    request_id = outcome.request.id
                    ids.append(request_id)

                    def card_posted(rid: str = request_id) -> bool:
                        return telegram_fake.card_for(rid, GROUP) is not None

                    await wait_until(card_posted, within=HOLD_SECONDS)
                    lateness.append(time.monotonic() - created_at)
                assert slack_fake.posts_in("C0OPS") == [], "Slack was sent to while paused"
                print(
                    f"L9 Slack paused by a 429: {ON_TIME_SAMPLES} Telegram cards posted p50 "
                    f"{sorted(lateness)[len(lateness) // 2]:.3f} s, p99 {_p99(lateness):.3f} s "
                    "after their request was committed"
                )
                assert _p99(lateness) < LATE_LIMIT_SECONDS

                clock.advance(timedelta(seconds=31))
                dispatcher.wake()
                await wait_until(
                    lambda: len(slack_fake.posts_in("C0OPS")) == ON_TIME_SAMPLES,
                    within=HOLD_SECONDS,
                )
                posted = [m.text for m in slack_fake.posts_in("C0OPS")]
                assert [f"Svc {n}" in text for n, text in enumerate(posted)] == [True] * len(ids)
            finally:
                await _stop(running)
    finally:
        await slack.stop()
        if slack_fake.events is not None:
            await slack_fake.events.aclose()
        await slack_fake.close()
        await telegram_fake.close()
