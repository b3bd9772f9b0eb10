"""Scenarios in Slack, in HTTP mode and Socket Mode, against the fake Slack."""

from __future__ import annotations

import asyncio

from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from tests.adapters.slack.conftest import ALICE, BOB, CHANNEL, DAVE, MIN, STRANGER, SlackWorld
from tests.waiting import wait_for


def status_is(slack: SlackWorld, request_id: str, status: Status):
    async def check() -> bool:
        return (await slack.get(request_id)).status is status

    return check


def told(slack: SlackWorld, user: str, words: str):
    async def check() -> bool:
        return any(words in e.text for e in slack.fake.ephemerals_for(user))

    return check


def modal_opened(slack: SlackWorld, count: int = 1):
    async def check() -> bool:
        return len(slack.fake.views) >= count

    return check


async def test_approve_edits_the_card_and_removes_the_buttons(slack):
    request_id, card = await slack.posted()
    assert card.channel == CHANNEL
    assert {b["action_id"] for b in card.buttons} == {
        "signoff_approve",
        "signoff_deny",
        "signoff_deny_reason",
    }

    ack = await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    if slack.mode == "http":
        assert ack["status"] == 200

    await wait_for(status_is(slack, request_id, Status.APPROVED))
    await slack.deliver()
    card = await slack.card(request_id)
    assert card.buttons == []
    assert "Approved by alice" in card.all_text
    decision = (await slack.get(request_id)).decision
    assert (decision.platform, decision.by) == ("slack", "alice")
    assert slack.fake.calls_to("chat.update")


async def test_deny_with_reason_via_the_modal(slack):
    request_id, card = await slack.posted("db.migrate")  # policy two-person needs a reason
    assert [b["action_id"] for b in card.buttons] == ["signoff_approve", "signoff_deny_reason"]

    await slack.fake.click(card, user=BOB, action_id="signoff_deny_reason")
    await wait_for(modal_opened(slack))
    view = slack.fake.views[0]
    assert view["callback_id"] == "signoff_deny_reason"
    assert view["blocks"][1]["optional"] is False

    # An empty reason is refused inside the modal, and nothing is decided.
    ack = await slack.fake.submit_view(view, user=BOB, reason="   ")
    assert "errors" in str(ack)
    assert (await slack.get(request_id)).status is Status.PENDING

    await slack.fake.submit_view(view, user=BOB, reason="the migration locks <!channel> tables")
    await wait_for(status_is(slack, request_id, Status.DENIED))
    request = await slack.get(request_id)
    assert request.decision.reason == "the migration locks <!channel> tables"
    await slack.deliver()
    card = await slack.card(request_id)
    assert card.buttons == []
    assert "the migration locks &lt;!channel&gt; tables" in card.all_text
    assert "<!channel>" not in card.all_text


async def test_optional_deny_with_reason_opens_an_optional_modal(slack):
    request_id, card = await slack.posted()
    await slack.fake.click(card, user=ALICE, action_id="signoff_deny_reason")
    await wait_for(modal_opened(slack))
    view = slack.fake.views[0]
    assert view["blocks"][1]["optional"] is True
    await slack.fake.submit_view(view, user=ALICE, reason="not today")
    await wait_for(status_is(slack, request_id, Status.DENIED))
    assert (await slack.get(request_id)).decision.reason == "not today"


async def test_non_approver_and_stranger_are_refused_ephemerally(slack):
    request_id, card = await slack.posted()
    await slack.fake.click(card, user=DAVE, action_id="signoff_approve")
    await wait_for(told(slack, DAVE, "dave is not an approver"))
    await slack.fake.click(card, user=STRANGER, action_id="signoff_deny")
    await wait_for(told(slack, STRANGER, "not linked to anyone"))
    assert (await slack.get(request_id)).status is Status.PENDING
    ephemeral = slack.fake.ephemerals_for(DAVE)[0]
    assert ephemeral.channel == CHANNEL
    codes = [e.data for e in await slack.audit(request_id) if e.kind == "refused"]
    assert any("not_an_approver" in data for data in codes)
    assert any("unknown_identity" in data for data in codes)


async def test_requester_is_refused_before_the_reason_modal(slack):
    request_id, card = await slack.posted("db.migrate", requested_by="bob")
    await slack.fake.click(card, user=BOB, action_id="signoff_deny_reason")
    await wait_for(told(slack, BOB, "made on your behalf"))
    assert slack.fake.views == []
    assert (await slack.get(request_id)).status is Status.PENDING


async def test_double_click_gives_one_decision(slack):
    request_id, card = await slack.posted()
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    await wait_for(status_is(slack, request_id, Status.APPROVED))
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    await wait_for(told(slack, ALICE, "already approved by alice"))
    kinds = [e.kind for e in await slack.audit(request_id)]
    assert kinds.count("decided") == 1


async def test_concurrent_clicks_give_one_decision(slack):
    request_id, card = await slack.posted()
    await asyncio.gather(
        slack.fake.click(card, user=ALICE, action_id="signoff_approve"),
        slack.fake.click(card, user=BOB, action_id="signoff_deny"),
        slack.fake.click(card, user=BOB, action_id="signoff_approve"),
    )

    async def settled() -> bool:
        request = await slack.get(request_id)
        return request.status.is_final and len(slack.fake.ephemerals) >= 1

    await wait_for(settled)
    request = await slack.get(request_id)
    kinds = [e.kind for e in await slack.audit(request_id)]
    assert kinds.count("decided") == 1
    assert len(request.votes) == 1
    assert any("already" in e.text for e in slack.fake.ephemerals)


async def test_decision_in_the_web_inbox_edits_the_slack_card(slack):
    request_id, card = await slack.posted()
    outcome = await slack.service.vote(VoteCommand(request_id, "web", "bob", Verdict.APPROVE))
    assert outcome.request.status is Status.APPROVED
    await slack.deliver()
    card = await slack.card(request_id)
    assert card.buttons == []
    assert "Approved by bob" in card.all_text
    assert card.history[0]["blocks"][-1]["type"] == "actions"  # it had buttons before


async def test_late_click_on_a_card_decided_elsewhere_is_told(slack):
    request_id, card = await slack.posted()
    await slack.service.vote(VoteCommand(request_id, "web", "bob", Verdict.DENY))
    # The card still shows buttons (the edit has not gone out yet); a click is answered.
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    await wait_for(told(slack, ALICE, "already denied by bob"))
    assert (await slack.get(request_id)).status is Status.DENIED


async def test_escalation_from_the_channel_to_approvers_dms(slack):
    request_id, _card = await slack.posted("infra.resize")
    slack.clock.advance(10 * MIN)
    assert await slack.service.process_due() == 1
    await slack.deliver()
    opened = slack.fake.calls_to("conversations.open")
    assert [c.params["users"] for c in opened] == [DAVE]
    channel_card = await slack.card(request_id)
    assert "Escalated to level 1: dave" in channel_card.all_text
    dm_card = await slack.card(request_id, f"slack:user:{DAVE}")
    assert dm_card.channel == "D" + DAVE

    await slack.fake.click(dm_card, user=DAVE, action_id="signoff_approve")
    await wait_for(status_is(slack, request_id, Status.APPROVED))
    await slack.deliver()
    for final in (await slack.card(request_id), await slack.card(request_id, f"slack:user:{DAVE}")):
        assert final.buttons == []
        assert "Approved by dave" in final.all_text


async def test_timeout_edits_the_card_to_denied(slack):
    request_id, card = await slack.posted()
    slack.clock.advance(31 * MIN)
    assert await slack.service.process_due() == 1
    await slack.deliver()
    final = await slack.card(request_id)
    assert final.buttons == []
    assert "Denied: nobody decided before the deadline" in final.all_text
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    await wait_for(told(slack, ALICE, "already denied by timeout"))


async def test_click_on_an_old_card_works_after_a_restart(slack):
    request_id, card = await slack.posted()
    await slack.restart_adapter()
    await slack.fake.click(card, user=BOB, action_id="signoff_approve")
    await wait_for(status_is(slack, request_id, Status.APPROVED))
    await slack.deliver()
    assert (await slack.card(request_id)).buttons == []


async def test_socket_mode_reconnects_after_slack_drops_the_connection(socket_slack):
    slack = socket_slack
    request_id, card = await slack.posted()
    opened = len(slack.fake.calls_to("apps.connections.open"))
    await slack.fake.drop_connections()

    async def reconnected() -> bool:
        fresh = len(slack.fake.calls_to("apps.connections.open")) > opened
        return fresh and slack.fake.connected >= 1

    await wait_for(reconnected)
    assert await slack.adapter.check_health()
    await slack.fake.click(card, user=ALICE, action_id="signoff_approve")
    await wait_for(status_is(slack, request_id, Status.APPROVED))
