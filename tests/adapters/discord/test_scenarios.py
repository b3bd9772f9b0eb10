"""Scenarios in Discord: the real discord.py against the fake Discord's REST API and gateway."""

from __future__ import annotations

import asyncio

from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from tests.adapters.discord.conftest import ALICE, CAROL, CHANNEL, MIN, STRANGER, answered
from tests.fakes.discord import EPHEMERAL
from tests.waiting import wait_for


async def test_approve_edits_the_card_and_removes_the_buttons(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    assert card.channel_id == CHANNEL
    assert [b["label"] for b in card.buttons] == ["Approve", "Deny", "Deny with reason…"]
    assert {b["custom_id"] for b in card.buttons} == {
        f"so1:a:{request_id}",
        f"so1:d:{request_id}",
        f"so1:r:{request_id}",
    }

    click = await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(answered(click))
    assert click.response_types == [6]  # deferred at once, within Discord's 3 s

    await wait_for(world.status_is(request_id, Status.APPROVED))
    await world.deliver()
    card = await world.card(request_id)
    assert card.buttons == []
    assert card.components == []
    assert "Approved by alice" in card.field("Status")
    assert card.embed["color"] == 0x2ECC71
    decision = (await world.get(request_id)).decision
    assert (decision.platform, decision.by) == ("discord", "alice")
    assert world.fake.calls_to("edit_message")


async def test_deny_with_reason_via_the_modal(discord_world):
    world = discord_world
    request_id, card = await world.posted("db.migrate")  # policy two-person needs a reason
    assert [b["label"] for b in card.buttons] == ["Approve", "Deny…"]

    click = await world.fake.click(card, user=CAROL, label="Deny…")
    await wait_for(answered(click))
    assert click.response_types == [9]  # the modal is the answer
    modal = click.modal
    assert modal["custom_id"] == f"so1:m:{request_id}"
    assert len(modal["custom_id"]) <= 100
    [label] = modal["components"]
    assert label["component"]["custom_id"] == "reason"
    assert label["component"]["required"] is True
    assert (await world.get(request_id)).status is Status.PENDING

    submitted = await world.fake.submit_modal(
        click, reason="the migration locks @everyone out of <@&123456789012345678>"
    )
    await wait_for(world.status_is(request_id, Status.DENIED))
    assert submitted.response_types == [6]
    request = await world.get(request_id)
    assert request.decision.reason == "the migration locks @everyone out of <@&123456789012345678>"
    await world.deliver()
    card = await world.card(request_id)
    assert card.buttons == []
    status = card.field("Status")
    assert "Denied by carol" in status
    assert "@\u200beveryone" in status
    assert "@everyone" not in card.all_text


async def test_an_empty_required_reason_is_refused_by_the_core(discord_world):
    world = discord_world
    request_id, card = await world.posted("db.migrate")
    click = await world.fake.click(card, user=CAROL, label="Deny…")
    await wait_for(answered(click))
    await world.fake.submit_modal(click, reason="   ")
    await wait_for(world.told(CAROL, "this policy needs a reason to deny"))
    assert (await world.get(request_id)).status is Status.PENDING


async def test_optional_deny_with_reason_opens_an_optional_modal(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    click = await world.fake.click(card, user=ALICE, label="Deny with reason…")
    await wait_for(answered(click))
    assert click.modal["components"][0]["component"]["required"] is False
    await world.fake.submit_modal(click, reason="not today")
    await wait_for(world.status_is(request_id, Status.DENIED))
    assert (await world.get(request_id)).decision.reason == "not today"


async def test_quorum_across_discord_and_another_platform_counts_persons(discord_world):
    world = discord_world
    request_id, card = await world.posted("db.migrate")
    await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(world.told(ALICE, "Your approval was counted"))
    assert (await world.get(request_id)).status is Status.PENDING
    await world.deliver()
    card = await world.card(request_id)
    assert "1 of 2 approvals" in card.field("Status")
    assert card.buttons  # still open for the second person

    # alice again, on Discord and in the web inbox: still one person.
    await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(world.told(ALICE, "alice has already voted"))
    web = await world.service.vote(VoteCommand(request_id, "web", "alice", Verdict.APPROVE))
    assert web.code.value == "already_voted"
    assert (await world.get(request_id)).status is Status.PENDING

    # bob, on Slack, completes the quorum; the Discord card shows it.
    await world.service.vote(VoteCommand(request_id, "slack", "U0BOB", Verdict.APPROVE))
    assert (await world.get(request_id)).status is Status.APPROVED
    await world.deliver()
    card = await world.card(request_id)
    assert "Approved by alice, bob" in card.field("Status")
    assert card.buttons == []


async def test_non_approver_and_stranger_are_refused_ephemerally(discord_world):
    world = discord_world
    request_id, card = await world.posted("infra.resize")  # level 1: alice only
    click = await world.fake.click(card, user=CAROL, label="Approve")
    await wait_for(world.told(CAROL, "carol is not an approver"))
    await world.fake.click(card, user=STRANGER, label="Deny")
    await wait_for(world.told(STRANGER, "not linked to anyone"))
    assert (await world.get(request_id)).status is Status.PENDING
    [followup] = click.followups
    assert followup.flags & EPHEMERAL
    codes = [e.data for e in await world.audit(request_id) if e.kind == "refused"]
    assert any("not_an_approver" in data for data in codes)
    assert any("unknown_identity" in data for data in codes)


async def test_requester_is_refused_before_the_reason_modal(discord_world):
    world = discord_world
    request_id, card = await world.posted("db.migrate", requested_by="carol")
    click = await world.fake.click(card, user=CAROL, label="Deny…")
    await wait_for(world.told(CAROL, "made on your behalf"))
    assert click.modal is None
    assert click.response_types == [4]  # an ephemeral answer instead of the modal
    assert (await world.get(request_id)).status is Status.PENDING
    assert await world.refusals("requester")


async def test_concurrent_clicks_give_one_decision(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    clicks = await asyncio.gather(
        world.fake.click(card, user=ALICE, label="Approve"),
        world.fake.click(card, user=CAROL, label="Deny"),
        world.fake.click(card, user=CAROL, label="Approve"),
        world.fake.click(card, user=ALICE, label="Deny"),
    )

    async def settled() -> bool:
        request = await world.get(request_id)
        told = sum(1 for c in clicks if c.ephemeral_texts)
        return request.status.is_final and told >= 3

    await wait_for(settled)
    request = await world.get(request_id)
    kinds = [e.kind for e in await world.audit(request_id)]
    assert kinds.count("decided") == 1
    assert len(request.votes) == 1
    assert all(c.response_types == [6] for c in clicks)
    texts = [text for c in clicks for text in c.ephemeral_texts]
    assert all("already" in text for text in texts)


async def test_decision_in_the_web_inbox_edits_the_discord_card(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    outcome = await world.service.vote(VoteCommand(request_id, "web", "bob", Verdict.APPROVE))
    assert outcome.request.status is Status.APPROVED
    await world.deliver()
    card = await world.card(request_id)
    assert card.buttons == []
    assert "Approved by bob" in card.field("Status")
    assert card.history[0]["components"]  # it had buttons before
    assert card.history[-1]["components"] == []


async def test_late_click_on_a_card_decided_elsewhere_is_told(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    await world.service.vote(VoteCommand(request_id, "web", "bob", Verdict.DENY))
    # The card still shows buttons (the edit has not gone out yet); a click is answered.
    await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(world.told(ALICE, "already denied by bob"))
    assert (await world.get(request_id)).status is Status.DENIED


async def test_escalation_from_the_channel_to_approvers_dms(discord_world):
    world = discord_world
    request_id, _card = await world.posted("infra.resize")
    world.clock.advance(10 * MIN)
    assert await world.service.process_due() == 1
    await world.deliver()
    opened = world.fake.calls_to("create_dm")
    assert [str(c.body["recipient_id"]) for c in opened] == [CAROL]
    channel_card = await world.card(request_id)
    assert "Escalated to level 1: carol" in channel_card.all_text
    dm_card = await world.card(request_id, f"discord:user:{CAROL}")
    assert dm_card.channel_id == world.fake.dm_channels[CAROL]
    assert dm_card.buttons

    await world.fake.click(dm_card, user=CAROL, label="Approve")
    await wait_for(world.status_is(request_id, Status.APPROVED))
    await world.deliver()
    for final in (
        await world.card(request_id),
        await world.card(request_id, f"discord:user:{CAROL}"),
    ):
        assert final.buttons == []
        assert "Approved by carol" in final.field("Status")


async def test_reminder_is_a_reply_to_the_card(discord_world):
    world = discord_world
    _request_id, card = await world.posted("infra.resize")
    world.clock.advance(4 * MIN)
    assert await world.service.process_due() == 1
    await world.deliver()
    replies = [m for m in world.fake.posts_in(CHANNEL) if m.message_reference]
    assert len(replies) == 1
    assert replies[0].message_reference["message_id"] == card.id
    assert "Reminder" in replies[0].content
    assert replies[0].allowed_mentions["parse"] == []


async def test_timeout_edits_the_card_to_denied(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    world.clock.advance(31 * MIN)
    assert await world.service.process_due() == 1
    await world.deliver()
    final = await world.card(request_id)
    assert final.buttons == []
    assert "Denied: nobody decided before the deadline" in final.field("Status")
    await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(world.told(ALICE, "already denied by timeout"))


async def test_click_on_a_card_posted_before_a_restart_still_decides(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    identifies = world.fake.identifies
    await world.restart_adapter()
    assert world.fake.identifies == identifies + 1  # a new process logs in afresh
    click = await world.fake.click(card, user=ALICE, label="Approve")
    await wait_for(world.status_is(request_id, Status.APPROVED))
    assert click.response_types == [6]
    await world.deliver()
    assert (await world.card(request_id)).buttons == []


async def test_gateway_drop_resumes_and_a_click_made_meanwhile_still_decides(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    world.fake.gateway_down = True
    await world.fake.drop_connections(code=4000)
    # Discord keeps what it dispatches while the bot is away; RESUME replays it.
    click = await world.fake.click(card, user=ALICE, label="Approve")
    assert world.fake.connected == 0
    world.fake.gateway_down = False

    async def resumed() -> bool:
        return world.fake.resumes >= 1 and world.fake.connected >= 1

    await wait_for(resumed)
    await wait_for(world.status_is(request_id, Status.APPROVED))
    assert click.response_types == [6]
    assert [e["d"]["id"] for e in world.fake.replayed] == [click.id]
    assert world.fake.identifies == 1  # resumed, not a new session
    assert await world.adapter.check_health()


async def test_gateway_drop_then_a_click_after_the_reconnect_decides(discord_world):
    world = discord_world
    request_id, card = await world.posted()
    await world.fake.drop_connections(code=1000)

    async def reconnected() -> bool:
        return world.fake.resumes >= 1 and world.fake.connected >= 1

    await wait_for(reconnected)
    await world.fake.click(card, user=CAROL, label="Approve")
    await wait_for(world.status_is(request_id, Status.APPROVED))
