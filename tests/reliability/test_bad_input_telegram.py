"""B2, B3 and B4 at the Telegram edge of the whole application.

From ``corpus/telegram_updates.yaml``: webhook posts without the right secret token get 403
and are not handled, and webhook mode without a usable secret refuses to start (B2); the
same update twice counts once (B3); forged callback queries are refused with a toast and
audited (B4), in polling and in webhook mode. Every run ends with the invariant checker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram import TelegramConfigError
from adapters.telegram.adapter import SECRET_HEADER, WEBHOOK_PATH
from approvals.machine import Status
from bot.app import build_runtime
from config import ConfigError, load_config_text
from tests.fakes.telegram import TOKEN, FakeMessage
from tests.reliability.app_world import (
    APPROVERS,
    TELEGRAM_GROUP,
    TELEGRAM_SECRET,
    AppWorld,
    app_world,
    fake_platforms,
)
from tests.reliability.corpus import cases
from tests.waiting import wait_for

ALICE, BOB = APPROVERS[0], APPROVERS[1]


@pytest.fixture(params=["polling", "webhook"])
async def world(request, tmp_path) -> Any:
    async with (
        fake_platforms(slack=False, discord=False) as (_slack, telegram, _discord),
        app_world(tmp_path, telegram=telegram, telegram_mode=request.param) as started,
    ):
        yield started


@pytest.fixture
async def webhook_world(tmp_path) -> Any:
    async with (
        fake_platforms(slack=False, discord=False) as (_slack, telegram, _discord),
        app_world(tmp_path, telegram=telegram, telegram_mode="webhook") as started,
    ):
        yield started


def mode_of(world: AppWorld) -> str:
    return "webhook" if world.telegram and world.telegram.webhook_url else "polling"


async def deliver(world: AppWorld, update: dict[str, Any], secret: str | None = None) -> int:
    """Hand ``update`` to the app as Telegram would in its mode; the webhook's status."""
    assert world.telegram is not None
    if mode_of(world) == "polling":
        return await world.telegram.deliver(update)
    headers = {"Content-Type": "application/json"}
    token = TELEGRAM_SECRET if secret is None else secret
    headers[SECRET_HEADER] = token
    response = await world.client.post(WEBHOOK_PATH, content=json.dumps(update), headers=headers)
    return response.status_code


async def toast(world: AppWorld, update: dict[str, Any]) -> str:
    assert world.telegram is not None
    fake = world.telegram
    return str(await fake.until(lambda: fake.answer_to(update), within=30))


async def refused(world: AppWorld, code: str) -> list[Any]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries()
    return [e for e in entries if e.kind == "refused" and f'"{code}"' in e.data]


def secret_header(entry: dict[str, Any]) -> str | None:
    header = entry["header"]
    if not isinstance(header, dict):
        return header
    if header.get("shorten"):
        return TELEGRAM_SECRET[: -int(header["shorten"])]
    if "append" in header:
        return TELEGRAM_SECRET + header["append"]
    if header.get("upper"):
        return TELEGRAM_SECRET.upper()
    return TELEGRAM_SECRET


@pytest.mark.parametrize("entry", cases("telegram_updates.yaml", "webhook_secrets"))
async def test_B2_telegram_webhook_without_the_secret_gets_403_and_is_not_handled(
    webhook_world, entry
):
    world = webhook_world
    request_id = await world.created()
    card = await world.telegram_card(request_id)
    update = world.telegram.callback_update(ALICE.telegram, card, card.button_data("Approve"))
    headers = {"Content-Type": "application/json"}
    header = secret_header(entry)
    if header is not None:
        headers[SECRET_HEADER] = header

    response = await world.client.post(WEBHOOK_PATH, content=json.dumps(update), headers=headers)

    assert response.status_code == entry["expect"]
    if entry["expect"] == 403:
        assert response.json()["error"]["code"]
        # A genuine click afterwards is handled; the refused update never was.
        genuine = world.telegram.callback_update(BOB.telegram, card, card.button_data("Deny"))
        assert await deliver(world, genuine) == 200
        assert await toast(world, genuine) == "Denied"
        assert world.telegram.answer_to(update) is None
        assert [vote.person for vote in (await world.get(request_id)).votes] == [BOB.name]
    else:
        assert await toast(world, update) == "Approved"
    await world.check()


@pytest.mark.parametrize("entry", cases("telegram_updates.yaml", "start_refusals"))
def test_B2_telegram_webhook_mode_without_a_usable_secret_refuses_to_start(
    tmp_path: Path, entry: dict[str, Any]
):
    secret = entry["webhook_secret"]
    if secret is not None:
        secret = secret * int(entry.get("repeat_secret", 1))
    text = (
        "version: 1\n"
        f'database: {{url: "sqlite:///{tmp_path / "s.db"}"}}\n'
        "people: {alice: {telegram: 1}}\n"
        "platforms:\n"
        "  telegram:\n"
        f'    bot_token: "{"${TELEGRAM_BOT_TOKEN}"}"\n'
        "    mode: webhook\n"
        + ('    webhook_secret: "${TELEGRAM_WEBHOOK_SECRET}"\n' if secret is not None else "")
        + "policies:\n"
        "  - name: default\n"
        "    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n"
    )
    environ = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": secret or ""}
    with pytest.raises((ConfigError, TelegramConfigError)) as refused_start:
        build_runtime(load_config_text(text, "signoff.yaml", environ=environ))
    assert "webhook_secret" in str(refused_start.value)


@pytest.mark.parametrize("entry", cases("telegram_updates.yaml", "replays"))
async def test_B3_the_same_telegram_update_twice_counts_once(world, entry):
    request_id = await world.created(action="db.migrate")  # quorum 3
    card = await world.telegram_card(request_id)
    update = world.telegram.callback_update(ALICE.telegram, card, card.button_data("Approve"))

    assert await deliver(world, update) == 200
    assert (await toast(world, update)).startswith("Your approval was counted")
    assert await deliver(world, update) == 200
    # A later click is answered only after the replay was handled.
    later = world.telegram.callback_update(BOB.telegram, card, card.button_data("Approve"))
    assert await deliver(world, later) == 200
    assert "2 of 3" in await toast(world, later)

    request = await world.get(request_id)
    assert [vote.person for vote in request.votes] == [ALICE.name, BOB.name]
    answers = world.telegram.sent("answerCallbackQuery", ok_only=False)
    query_id = update["callback_query"]["id"]
    assert [c.params["callback_query_id"] for c in answers].count(query_id) == 1
    await world.check()


@pytest.mark.parametrize("entry", cases("telegram_updates.yaml", "forged"))
async def test_B4_forged_telegram_buttons_are_refused_and_audited(world, entry):
    request_id = await world.created(title="the card clicked")
    other_id = await world.created(title="another request")
    card = await world.telegram_card(request_id)
    other_card = await world.telegram_card(other_id)
    shown: FakeMessage | dict[str, Any] = card
    data = card.button_data("Approve")
    forge = entry["forge"]
    value = entry.get("value")
    if forge == "data":
        data = str(value) * int(entry.get("repeat_value", 1))
    elif forge == "data_for_request":
        data = f"{value}{request_id}"
    elif forge == "other_request":
        data = other_card.button_data("Approve")
    elif forge == "chat":
        shown = {**card.to_json(), "chat": {"id": value, "type": "supergroup", "title": "x"}}
    elif forge == "message_id":
        shown = {**card.to_json(), "message_id": value}
    update = world.telegram.callback_update(ALICE.telegram, shown, data)

    assert await deliver(world, update) == 200

    assert (await toast(world, update)).startswith("Your click was not counted: this ")
    found = await wait_for(lambda: refused(world, entry["expect"]))
    assert found[0].actor == f"telegram:{ALICE.telegram}"
    for untouched in (request_id, other_id):
        request = await world.get(untouched)
        assert request.status is Status.PENDING
        assert request.votes == ()
    assert world.telegram.card_for(request_id, TELEGRAM_GROUP) is not None
    await world.check()
