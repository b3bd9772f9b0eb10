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
import html
import json
import re
from typing import Any

import pytest

from adapters.slack.blocks import CONFIRM_VIEW, metadata
from adapters.teams import MESSAGES_PATH
from adapters.teams.cards import APPROVE, CONFIRM
from approvals.machine import Status
from approvals.model import Verdict
from tests.adapters.email.conftest import links_in
from tests.fakes.smtp import FakeSmtpRelay
from tests.fakes.teams import FakeTeams, card_actions
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


@pytest.fixture
async def teams_world(tmp_path) -> Any:
    with FakeTeams() as teams:
        async with app_world(tmp_path, teams=teams) as started:
            yield started


@pytest.mark.parametrize("entry", cases("confirm_steps.yaml", "teams"))
async def test_B4_a_teams_approval_without_its_confirmation_counts_nothing(teams_world, entry):
    world = teams_world
    fake = world.teams
    assert fake is not None
    request_id = await world.created(action="wire.pay", params=WIRE)
    other_id = await world.created(action="wire.pay", params=WIRE | {"amount": 1})
    card = await world.teams_card(request_id)
    other_card = await world.teams_card(other_id)

    async def press(user: str, data: dict[str, Any], on: Any = card) -> dict[str, Any]:
        activity = fake.invoke_activity(on, user_aad_id=user, verb=str(data["action"]), data=data)
        response = await world.client.post(
            MESSAGES_PATH, content=json.dumps(activity).encode(), headers=fake.headers_for(activity)
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def confirm_data(user: str, on: Any, request: str) -> dict[str, Any]:
        shown = await press(user, {"action": APPROVE, "request": request}, on)
        assert shown["type"] == "application/vnd.microsoft.card.adaptive", shown
        [confirm] = [a for a in card_actions(shown["value"]) if a["verb"] == CONFIRM]
        data: dict[str, Any] = confirm["data"]
        return data

    forge = entry["forge"]
    presser = ALICE.teams
    if forge == "button_only":
        await confirm_data(ALICE.teams, card, request_id)
        assert not await unconfirmed(world, request_id)
    else:
        if forge == "data":
            data = {"request": request_id} | entry["data"]
        elif forge == "other_person":
            data = await confirm_data(ALICE.teams, card, request_id)
            presser = BOB.teams
        else:  # other_request
            others = await confirm_data(ALICE.teams, other_card, other_id)
            data = others | {"request": request_id}
        answer = await press(presser, data)
        assert "not counted" in answer["value"]
        found = await unconfirmed(world, request_id)
        assert [e.actor for e in found] == [f"teams:{presser}"]
    await assert_pending(world, request_id, other_id)
    await world.check()


TOKEN_FIELD = re.compile(r'name="confirm_token" value="([^"]+)"')
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
async def web_world(tmp_path) -> Any:
    async with app_world(tmp_path) as started:
        yield started


@pytest.mark.parametrize("entry", cases("confirm_steps.yaml", "web"))
async def test_B4_an_inbox_approval_without_its_confirmation_counts_nothing(web_world, entry):
    world = web_world
    request_id = await world.created(action="wire.pay", params=WIRE)
    alice = await world.signed_in(ALICE.name)
    page = await alice.get(f"/requests/{request_id}")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    token = entry["token"]
    if token == "bobs":
        bob = await world.signed_in(BOB.name)
        bob_page = await bob.get(f"/requests/{request_id}")
        bob_csrf = re.search(r'name="csrf_token" value="([^"]+)"', bob_page.text)
        assert bob_csrf is not None
        step = await bob.post(
            f"/requests/{request_id}/approve", data={"csrf_token": bob_csrf.group(1)}
        )
        found = TOKEN_FIELD.search(step.text)
        assert found is not None
        token = html.unescape(found.group(1))
    elif token is not None:
        token = str(token) * int(entry.get("times", 1))
    form = {"csrf_token": csrf.group(1)} | ({} if token is None else {"confirm_token": token})

    answer = await alice.post(f"/requests/{request_id}/approve", data=form)

    if entry["expect"] == "confirmation_shown":
        assert answer.status_code == 200
        assert "Confirm your approval" in answer.text
        assert not await unconfirmed(world, request_id)
    else:
        assert answer.status_code in (403, 422)
        assert "not counted" in answer.text
        found_refusals = await unconfirmed(world, request_id)
        assert [e.actor for e in found_refusals] == [f"web:{ALICE.name}"]
    await assert_pending(world, request_id)
    await world.check()


@pytest.fixture
async def email_world(tmp_path) -> Any:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    try:
        async with app_world(tmp_path, email=relay) as started:
            yield started
    finally:
        await relay.stop()


@pytest.mark.parametrize("entry", cases("confirm_steps.yaml", "email"))
async def test_B4_an_email_links_approval_without_its_confirmation_counts_nothing(
    email_world, entry
):
    world = email_world
    request_id = await world.created(action="wire.pay", params=WIRE)
    (mail,) = await world.mail(request_id, ALICE.email)
    path = links_in(mail)[Verdict.APPROVE]
    opened = await world.client.get(path)
    assert TOKEN_FIELD.search(opened.text), "the link's page is the confirm step"
    token = entry["token"]
    if token == "bobs":
        (bobs_mail,) = await world.mail(request_id, BOB.email)
        bobs_page = await world.client.get(links_in(bobs_mail)[Verdict.APPROVE])
        found = TOKEN_FIELD.search(bobs_page.text)
        assert found is not None
        token = html.unescape(found.group(1))
    form = {"confirm": "1"} | ({} if token is None else {"confirm_token": token})

    answer = await world.client.post(path, data=form, headers=SAME_SITE)

    assert answer.status_code == 422
    assert "not counted" in answer.text
    found_refusals = await unconfirmed(world, request_id)
    assert [e.actor for e in found_refusals] == [f"email:{ALICE.email}"]
    await assert_pending(world, request_id)
    claim = await world.runtime.service.links.read(path.rsplit("/", 1)[1])
    assert claim is not None
    assert not await world.runtime.service.links.spent(claim.nonce)
    await world.check()
