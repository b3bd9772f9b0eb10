"""An escalation from a Slack level to a Teams level, end to end, with both real adapters.

The request needs two approvals. Alice approves on Slack; nobody else does in time, so it
escalates to a level whose cards go to a Teams channel. Alice is on both platforms: her
click on the Teams card is the same person voting again and does not count; Dave's
approval on Teams completes the quorum.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from approvals.clock import ManualClock
from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.policy import Level, Policy, PolicySet, TimeoutOutcome
from approvals.service import Rules
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.slack.conftest import (
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    start_adapter,
)
from tests.adapters.slack.conftest import CHANNEL as SLACK_CHANNEL
from tests.adapters.teams.conftest import (
    ALICE,
    CHANNEL,
    CHANNEL_KEY,
    DAVE,
    TeamsClient,
    teams_directory,
)
from tests.fakes.slack import FakeSlack
from tests.fakes.teams import FakeTeams, card_text
from tests.waiting import wait_for
from tests.world import build_test_runtime

MIN = timedelta(minutes=1)
FIRST_LEVEL = 10 * MIN


@pytest.fixture
def rules() -> Rules:
    policy = Policy(
        name="slack-then-teams",
        quorum=2,
        levels=(
            Level(approvers=("alice", "bob"), notify=("ops-slack",), timeout=FIRST_LEVEL),
            Level(approvers=("dave",), notify=("ops-teams",), timeout=30 * MIN),
        ),
        on_timeout=TimeoutOutcome.DENY,
    )
    return Rules(policies=PolicySet((policy,)), directory=teams_directory())


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await fake.start()
    yield fake
    await fake.close()


async def test_slack_then_teams_one_person_on_both_counts_once(
    store: SqlStore,
    clock: ManualClock,
    rules: Rules,
    fake_slack: FakeSlack,
    fake_teams: FakeTeams,
) -> None:
    runtime: Runtime = build_test_runtime(store, clock, rules)
    service = runtime.service
    slack = await start_adapter(fake_slack, service, "http")
    teams = await TeamsClient.start(fake_teams, service)
    runtime.dispatcher.use_adapter("slack", slack)
    runtime.dispatcher.use_adapter("teams", teams.adapter)
    try:
        request = await runtime_create(runtime)
        await runtime.dispatcher.drain()
        [slack_card] = fake_slack.posts_in(SLACK_CHANNEL)
        assert fake_teams.posts_in(CHANNEL) == []

        # Level 1, on Slack: alice approves (1 of 2).
        await fake_slack.deliver(
            fake_slack.click_payload(slack_card, user="U0ALICE", action_id="signoff_approve")
        )

        async def alice_counted() -> bool:
            got = await service.get(request)
            return got is not None and [v.person for v in got.votes] == ["alice"]

        await wait_for(alice_counted)

        # Nobody else in time: level 2, on Teams.
        clock.advance(FIRST_LEVEL + timedelta(seconds=1))
        await service.process_due()
        await runtime.dispatcher.drain()
        [teams_card] = fake_teams.posts_in(CHANNEL)
        assert "Run infra.restart" in card_text(teams_card)
        assert "1 of 2 approvals" in card_text(teams_card)

        # Alice again, now on Teams: the same person, so it does not count twice.
        await teams.click(teams_card, ALICE, "signoff.approve")
        assert any("alice has already voted" in told for told in teams.told(ALICE))
        got = await service.get(request)
        assert got is not None
        assert got.status is Status.PENDING
        assert [vote.person for vote in got.votes] == ["alice"]

        # Dave, on Teams, completes the quorum.
        answer = await teams.click(teams_card, DAVE, "signoff.approve")
        assert answer["type"] == "application/vnd.microsoft.card.adaptive"
        assert "Approved by alice, dave" in card_text(answer["value"])
        got = await service.get(request)
        assert got is not None
        assert got.status is Status.APPROVED
        assert [(vote.person, vote.platform) for vote in got.votes] == [
            ("alice", "slack"),
            ("dave", "teams"),
        ]

        # Both cards end in the final state, for everyone.
        await runtime.dispatcher.drain()
        async with store.read() as reader:
            deliveries = await reader.deliveries(request)
        teams_ref = next(d.ref for d in deliveries if d.destination == CHANNEL_KEY)
        assert teams_ref is not None
        final = fake_teams.message(teams_ref["conversation_id"], teams_ref["activity_id"])
        assert "Approved by alice, dave" in card_text(final)
        slack_final = fake_slack.messages[(slack_card.channel, slack_card.ts)]
        assert "Approved by alice, dave" in slack_final.all_text
        assert slack_final.buttons == []
    finally:
        await teams.close()
        await slack.stop()
        if fake_slack.events is not None:
            await fake_slack.events.aclose()
            fake_slack.events = None


async def runtime_create(runtime: Runtime) -> str:
    outcome = await runtime.service.create(
        CreateCommand(
            agent="deploy-bot",
            action="infra.restart",
            title="Run infra.restart",
            params={"service": "api"},
        )
    )
    assert isinstance(outcome, Created), outcome
    return outcome.request.id
