"""F8 on Slack: the Socket Mode connection is closed by Slack (twice), a click is delivered
twice, and the process restarts; every click counts once and old buttons keep working.

Built on the Slack adapter's world (real slack-bolt / slack_sdk against the fake Slack).
"""

from __future__ import annotations

from datetime import timedelta

from approvals.machine import Status
from tests.adapters.slack.conftest import (  # noqa: F401 - fixtures used by name
    ALICE,
    BOB,
    fake_slack,
    rules,
    socket_slack,
)
from tests.reliability.invariants import check_invariants, rendered_cards, slack_reader
from tests.waiting import wait_for


async def test_F8_slack_socket_mode_drops_a_duplicate_and_a_restart_lose_no_click(
    socket_slack,  # noqa: F811
):
    """F8: Slack closes the socket twice; the adapter reconnects each time; a click sent
    twice (Slack redelivers an envelope it thinks unanswered) decides once; after a restart
    an old card's button still decides."""
    slack = socket_slack
    first_id, first_card = await slack.posted()
    second_id, second_card = await slack.posted(action="deploy.api")

    for drop in range(2):
        opened = len(slack.fake.calls_to("apps.connections.open"))
        await slack.fake.drop_connections()

        async def reconnected(opened: int = opened) -> bool:
            fresh = len(slack.fake.calls_to("apps.connections.open")) > opened
            return fresh and slack.fake.connected >= 1

        await wait_for(reconnected)
        assert await slack.adapter.check_health(), f"unhealthy after drop {drop + 1}"

    payload = slack.fake.click_payload(first_card, user=ALICE, action_id="signoff_approve")
    first_ack = await slack.fake.push(payload)
    second_ack = await slack.fake.push(payload)  # the same envelope content, again
    assert first_ack["envelope_id"] != second_ack["envelope_id"]

    async def approved() -> bool:
        return (await slack.get(first_id)).status is Status.APPROVED

    await wait_for(approved)

    async def told_already() -> bool:
        return any("already approved" in e.text for e in slack.fake.ephemerals_for(ALICE))

    await wait_for(told_already)
    assert len((await slack.get(first_id)).votes) == 1

    await slack.restart_adapter()
    await slack.fake.click(second_card, user=BOB, action_id="signoff_approve")

    async def second_approved() -> bool:
        return (await slack.get(second_id)).status is Status.APPROVED

    await wait_for(second_approved)
    await slack.deliver()
    cards = await rendered_cards(slack.store, slack_reader(slack.fake))
    report = await check_invariants(
        slack.store,
        now=slack.clock.now(),
        sweep_interval=timedelta(seconds=1),
        accepted=[first_id, second_id],
        cards=cards,
    )
    assert (report.final, report.votes, report.cards_checked) == (2, 2, 2)
    print(
        f"F8 Slack: {len(slack.fake.calls_to('apps.connections.open'))} connections opened "
        "(2 drops, 1 restart); a doubled click decided once"
    )
