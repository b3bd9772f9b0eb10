"""B4 for the confirm step-up: the final step of a confirmed approval, posted directly.

Each entry of ``corpus/confirm_steps.yaml`` creates a request under the application's
``critical`` policy (approvals need confirming) and posts the last step of the approval
the way a forger or a stale client would: without the confirmation token, with a forged
one, with one shown to someone else or for another request. Nothing counts: the refusal is
audited as ``unconfirmed_approval``, the person is told privately, the request stays
pending. Every run ends with the invariant checker.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from adapters.slack.blocks import CONFIRM_VIEW, metadata
from approvals.machine import Status
from tests.reliability.app_world import APPROVERS, AppWorld, app_world, fake_platforms
from tests.reliability.corpus import cases
from tests.reliability.test_bad_input_telegram import deliver
from tests.waiting import wait_for

ALICE, BOB = APPROVERS[0], APPROVERS[1]
WIRE = {"amount": 1200, "iban": "DE89370400440532013000"}
FORGED_TOKEN = "zzzzzz.AAAAAAAAAAAAAAAA"  # signed with no key signoff has


async def unconfirmed(world: AppWorld, request_id: str) -> list[Any]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [e for e in entries if e.kind == "refused" and '"unconfirmed_approval"' in e.data]


async def assert_pending(world: AppWorld, *request_ids: str) -> None:
    for request_id in request_ids:
        request = await world.get(request_id)
        assert (request.status, request.votes) == (Status.PENDING, ())


@pytest.fixture(params=["http", "socket"])
async def slack_world(request, tmp_path) -> Any:
    async with (
        fake_platforms(telegram=False, discord=False) as (slack, _telegram, _discord),
        app_world(tmp_path, slack=slack, slack_mode=request.param) as started,
    ):
        yield started


@pytest.mark.parametrize("entry", cases("confirm_steps.yaml", "slack"))
async def test_B4_a_slack_approval_without_its_confirmation_counts_nothing(slack_world, entry):
    world = slack_world
    fake = world.slack
    assert fake is not None
    request_id = await world.created(action="wire.pay", params=WIRE)
    other_id = await world.created(action="wire.pay", params=WIRE | {"amount": 1})
    card = await world.slack_card(request_id)
    other_card = await world.slack_card(other_id)
    forge = entry["forge"]

    async def modal_for(message: Any, user: str, count: int) -> dict[str, Any]:
        await fake.click(message, user=user, action_id="signoff_approve")

        async def opened() -> bool:
            return len(fake.views) >= count

        await wait_for(opened)
        return fake.views[-1]

    async def told(user: str) -> bool:
        return bool(fake.ephemerals_for(user))

    if forge == "button_only":
        view = await modal_for(card, ALICE.slack, 1)
        assert view["callback_id"] == CONFIRM_VIEW
        assert not await unconfirmed(world, request_id)
    else:
        if forge in ("no_token", "forged_token"):
            token = None if forge == "no_token" else FORGED_TOKEN
            view = {
                "type": "modal",
                "callback_id": CONFIRM_VIEW,
                "private_metadata": metadata(f"so1:{request_id}", card.channel, card.ts, token),
                "blocks": [],
            }
            submitter = ALICE.slack
        elif forge == "other_person":
            view = await modal_for(card, ALICE.slack, 1)
            submitter = BOB.slack
        else:  # other_request: the modal of another card, its metadata pointed at this one
            opened = await modal_for(other_card, ALICE.slack, 1)
            meta = json.loads(opened["private_metadata"])
            meta |= {"value": f"so1:{request_id}", "ts": card.ts}
            view = opened | {"private_metadata": json.dumps(meta)}
            submitter = ALICE.slack
        await fake.submit_view(view, user=submitter, reason=None)
        found = await wait_for(lambda: unconfirmed(world, request_id))
        assert found[0].actor == f"slack:{submitter}"
        await wait_for(lambda: told(submitter))
        assert "not counted" in fake.ephemerals_for(submitter)[-1].text
    assert entry["expect"] in ("confirmation_shown", "unconfirmed_approval")
    await assert_pending(world, request_id, other_id)
    await world.check()


@pytest.fixture(params=["polling", "webhook"])
async def telegram_world(request, tmp_path) -> Any:
    async with (
        fake_platforms(slack=False, discord=False) as (_slack, telegram, _discord),
        app_world(tmp_path, telegram=telegram, telegram_mode=request.param) as started,
    ):
        yield started


@pytest.mark.parametrize("entry", cases("confirm_steps.yaml", "telegram"))
async def test_B4_a_telegram_approval_without_its_confirmation_counts_nothing(
    telegram_world, entry
):
    world = telegram_world
    fake = world.telegram
    assert fake is not None
    request_id = await world.created(action="wire.pay", params=WIRE)
    other_id = await world.created(action="wire.pay", params=WIRE | {"amount": 1})
    card = copy.deepcopy(await world.telegram_card(request_id))
    other_card = copy.deepcopy(await world.telegram_card(other_id))
    forge = entry["forge"]

    async def press(user: int, message: Any, data: str) -> dict[str, Any]:
        update = fake.callback_update(user, message, data)
        assert await deliver(world, update) == 200
        return update

    async def confirmation_for(message: Any, user: int) -> Any:
        update = await press(user, message, message.button_data("Approve"))
        await fake.until(lambda: fake.answer_to(update))
        found = await fake.until(
            lambda: next(
                (
                    m
                    for m in fake.bot_messages(message.chat_id)
                    if m.reply_to is not None
                    and m.reply_to.message_id == message.message_id
                    and m.buttons()
                ),
                None,
            )
        )
        return copy.deepcopy(found)

    if forge == "button_only":
        shown = await confirmation_for(card, ALICE.telegram)
        assert "Confirm approve" in str(shown.buttons())
        assert not await unconfirmed(world, request_id)
    else:
        presser, pressed_on = ALICE.telegram, None
        if forge == "forged_token":
            pressed_on = await confirmation_for(card, ALICE.telegram)
            data = f"so1:c:{request_id}:{FORGED_TOKEN}"
        elif forge == "forged_token_on_card":
            pressed_on, data = card, f"so1:c:{request_id}:{FORGED_TOKEN}"
        elif forge == "other_person":
            pressed_on = await confirmation_for(card, ALICE.telegram)
            presser, data = BOB.telegram, pressed_on.button_data("Confirm approve")
        elif forge == "other_request":
            others = await confirmation_for(other_card, ALICE.telegram)
            token = others.button_data("Confirm approve").rsplit(":", 1)[1]
            pressed_on = await confirmation_for(card, ALICE.telegram)
            data = f"so1:c:{request_id}:{token}"
        else:  # malformed_token
            pressed_on, data = card, f"so1:c:{request_id}:not a token"
        update = await press(presser, pressed_on, data)
        answer = await fake.until(lambda: fake.answer_to(update))
        assert "not counted" in answer
        code = entry["expect"]
        async with world.store.read() as reader:
            entries = await reader.audit_entries()
        refused = [e for e in entries if e.kind == "refused" and f'"{code}"' in e.data]
        assert [e.actor for e in refused] == [f"telegram:{presser}"]
    await assert_pending(world, request_id, other_id)
    await world.check()


@pytest.fixture
async def discord_world(tmp_path) -> Any:
    async with (
        fake_platforms(slack=False, telegram=False) as (_slack, _telegram, discord),
        app_world(tmp_path, discord=discord) as started,
    ):
        yield started


@pytest.mark.parametrize("entry", cases("confirm_steps.yaml", "discord"))
async def test_B4_a_discord_approval_without_its_confirmation_counts_nothing(discord_world, entry):
    world = discord_world
    fake = world.discord
    assert fake is not None
    request_id = await world.created(action="wire.pay", params=WIRE)
    other_id = await world.created(action="wire.pay", params=WIRE | {"amount": 1})
    card = await world.discord_card(request_id)
    other_card = await world.discord_card(other_id)
    forge = entry["forge"]

    async def modal_of(message: Any) -> Any:
        click = await fake.click(message, user=ALICE.discord, label="Approve")

        async def answered() -> bool:
            return bool(click.responses)

        await wait_for(answered)
        assert click.modal is not None
        return click

    def pointed(opened: Any, custom_id: str) -> Any:
        """The opened modal as a forger would submit it: another ``custom_id``."""
        forged = copy.deepcopy(opened)
        forged.responses = [
            r | {"data": (r.get("data") or {}) | {"custom_id": custom_id}} for r in forged.responses
        ]
        return forged

    submitter = ALICE.discord
    if forge == "button_only":
        opened = await modal_of(card)
        assert opened.modal["custom_id"].startswith(f"so1:c:{request_id}:")
        assert not await unconfirmed(world, request_id)
    else:
        if forge == "custom_id":
            custom_id = str(entry["value"]).format(request=request_id)
            await fake.submit_modal(pointed(await modal_of(card), custom_id), reason="")
        elif forge == "other_person":
            submitter = BOB.discord
            await fake.submit_modal(await modal_of(card), reason="", user=submitter)
        elif forge == "other_request":
            others = await modal_of(other_card)
            token = others.modal["custom_id"].rsplit(":", 1)[1]
            opened = pointed(await modal_of(card), f"so1:c:{request_id}:{token}")
            await fake.submit_modal(opened, reason="")
        else:  # button_with_modal_id
            opened = await modal_of(card)
            await fake.click(card, user=submitter, custom_id=opened.modal["custom_id"])

        async def refused() -> list[Any]:
            async with world.store.read() as reader:
                entries = await reader.audit_entries()
            code = f'"{entry["expect"]}"'
            return [e for e in entries if e.kind == "refused" and code in e.data]

        found = await wait_for(refused)
        assert [e.actor for e in found] == [f"discord:{submitter}"]

        async def told() -> bool:
            return any("not counted" in text for text in fake.ephemerals_for(submitter))

        await wait_for(told)
    await assert_pending(world, request_id, other_id)
    await world.check()
