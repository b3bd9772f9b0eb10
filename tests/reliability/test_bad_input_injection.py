"""B6: the injection corpus in agent text, params and a decider's reason, through every
renderer of the whole application: Slack, Telegram, Discord and the web inbox.

Every string of ``corpus/injection.yaml`` becomes one request over the API (as its title,
details, a param key and a param value), is posted to a channel on each platform, and is
denied in the web inbox with the string as the reason, so that the card edits carry it
too. Then every payload the fake platforms received is checked: no raw mention, link or
formatting syntax (Slack: agent text only in ``plain_text``; Telegram: the HTML parses and
makes no entity but ours; Discord: ``allowed_mentions.parse == []`` everywhere), invisible
characters shown as markers, every message within its platform's limits with the payload
hash and the inbox link still on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from adapters.slack import blocks
from approvals.machine import Status
from tests.adapters.discord.conftest import RAW_MENTION
from tests.adapters.slack.conftest import RAW_MARKUP
from tests.reliability.app_world import TELEGRAM_GROUP, AppWorld, app_world, fake_platforms
from tests.reliability.corpus import entries
from tests.waiting import wait_for
from tests.web.conftest import csrf_token_in

STRINGS = entries("injection.yaml", "strings")
PUBLIC_URL = "http://127.0.0.1:8080"
"""The app's default ``server.public_url``: the only link any card may carry."""
HIDDEN = "\u202e\u2066\u2067\u2069\u200b\u200c\u200d\ufeff\u2060\u0007\u001b\u00ad"
TELEGRAM_ENTITIES = {"bold", "italic", "code", "pre", "text_link"}
"""What signoff's own Telegram HTML makes; agent text must add nothing."""
TELEGRAM_MAX = 4096
DISCORD_MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*\]\((?!" + re.escape(PUBLIC_URL) + r"/requests/)")
SLACK_OWN_MRKDWN = re.compile(r"^<" + re.escape(PUBLIC_URL) + r"/requests/[^|<>]+\|[^<>]*>$")
"""The one mrkdwn text a Slack card has: signoff's link to the inbox."""


def body_for(text: str) -> dict[str, Any]:
    """The API body carrying ``text`` everywhere an agent can put text (within its limits)."""
    return {
        "action": "deploy.web",
        "title": text[:500] if text.strip() else f"blank {text!r}",
        "details": text[:20_000],
        "params": {
            "text": text,
            text[:200] or "empty": "as a key",
            "nested": {"list": [text[:500]]},
        },
    }


def texts_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts_in(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts_in(v)]
    return []


def text_objects(value: Any) -> list[dict[str, Any]]:
    """Every Block Kit text object (``{"type": "mrkdwn"|"plain_text", "text": ...}``)."""
    found = []
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text") and isinstance(value.get("text"), str):
            found.append(value)
        for item in value.values():
            found += text_objects(item)
    elif isinstance(value, list):
        for item in value:
            found += text_objects(item)
    return found


def discord_texts(payload: dict[str, Any]) -> list[str]:
    texts = [str(payload.get("content") or "")]
    for embed in payload.get("embeds") or []:
        texts += [str(embed.get("title", "")), str(embed.get("description", ""))]
        texts += [str(embed.get("footer", {}).get("text", ""))]
        for item in embed.get("fields", []):
            texts += [str(item["name"]), str(item["value"])]
    return texts


async def deny_in_the_inbox(world: AppWorld, request_id: str, reason: str) -> str:
    """Deny with ``reason`` in the web inbox; returns the request page as then shown."""
    client = await world.signed_in("p01")
    page = await client.get(f"/requests/{request_id}")
    assert page.status_code == 200
    denied = await client.post(
        f"/requests/{request_id}/deny",
        data={"csrf_token": csrf_token_in(page.text), "reason": reason},
    )
    assert denied.status_code == 303, denied.text[:300]
    return (await client.get(f"/requests/{request_id}")).text


def check_slack(world: AppWorld, problems: list[str]) -> None:
    assert world.slack is not None
    calls = [c for c in world.slack.calls if c.method.startswith(("chat.", "views."))]
    assert calls
    for call in calls:
        if call.error:
            problems.append(f"slack {call.method} failed: {call.error}")
        shown = json.dumps(call.params, ensure_ascii=False)
        if RAW_MARKUP.search(shown):
            problems.append(f"slack {call.method}: raw markup in {shown[:200]}")
        if any(ch in shown for ch in HIDDEN):
            problems.append(f"slack {call.method}: an invisible character is not shown")
        blocks = call.params.get("blocks") or []
        for obj in text_objects(blocks):
            if obj["type"] == "mrkdwn" and not SLACK_OWN_MRKDWN.match(obj["text"]):
                problems.append(f"slack {call.method}: mrkdwn carries {obj['text'][:120]!r}")
        problems.extend(f"slack {call.method}: {p}" for p in slack_limit_problems(call.params))


def slack_limit_problems(params: dict[str, Any]) -> list[str]:
    """Where a message breaks Slack's Block Kit limits (adapters.slack.blocks names them)."""
    found = []
    if len(str(params.get("text", ""))) > blocks.MAX_MESSAGE_TEXT:
        found.append("the text is too long")
    message_blocks = params.get("blocks") or []
    if len(message_blocks) > blocks.MAX_BLOCKS:
        found.append("too many blocks")
    for block in message_blocks:
        if len(block.get("text", {}).get("text", "")) > blocks.MAX_SECTION_TEXT:
            found.append("a section's text is too long")
        fields = block.get("fields", [])
        if len(fields) > blocks.MAX_FIELDS_PER_SECTION:
            found.append("a section has too many fields")
        if any(len(item["text"]) > blocks.MAX_FIELD_TEXT for item in fields):
            found.append("a field is too long")
        buttons = [e for e in block.get("elements", []) if e.get("type") == "button"]
        if any(len(button["text"]["text"]) > blocks.MAX_BUTTON_TEXT for button in buttons):
            found.append("a button label is too long")
    return found


def check_telegram(world: AppWorld, request_ids: list[str], problems: list[str]) -> None:
    assert world.telegram is not None
    for method in ("sendMessage", "editMessageText"):
        for call in world.telegram.sent(method, ok_only=False):
            if call.status != 200:
                problems.append(f"telegram {method} was refused ({call.status}): bad HTML?")
    for request_id in request_ids:
        card = world.telegram.card_for(request_id, TELEGRAM_GROUP)
        if card is None:
            problems.append(f"telegram: no card for {request_id}")
            continue
        for entity in card.entities:
            if entity["type"] not in TELEGRAM_ENTITIES:
                problems.append(f"telegram {request_id}: agent text made a {entity['type']}")
            elif entity["type"] == "text_link" and entity["url"] != (
                f"{PUBLIC_URL}/requests/{request_id}"
            ):
                problems.append(f"telegram {request_id}: a link to {entity['url']}")
        if len(card.text.encode("utf-16-le")) // 2 > TELEGRAM_MAX:
            problems.append(f"telegram {request_id}: longer than {TELEGRAM_MAX}")


def check_discord(world: AppWorld, problems: list[str]) -> None:
    assert world.discord is not None
    payloads = world.discord.outbound_payloads()
    assert payloads
    for payload in payloads:
        mentions = payload.get("allowed_mentions") or {}
        if mentions.get("parse") != [] or mentions.get("users") or mentions.get("roles"):
            problems.append(f"discord: allowed_mentions {mentions}")
        for text in discord_texts(payload):
            if RAW_MENTION.search(text) or DISCORD_MASKED_LINK.search(text):
                problems.append(f"discord: live mention or link in {text[:200]!r}")
            # discord.py's own escape puts U+200B after "@"; the agent's are shown as markers.
            if any(ch in text for ch in HIDDEN.replace("\u200b", "")):
                problems.append("discord: an invisible character is not shown")
        for embed in payload.get("embeds") or []:
            if len(embed.get("title", "")) > 256 or any(
                len(f["value"]) > 1024 or len(f["name"]) > 256 for f in embed.get("fields", [])
            ):
                problems.append("discord: an embed is over Discord's limits")
        if len(str(payload.get("content") or "")) > 2000:
            problems.append("discord: content over 2000 characters")


async def test_B6_injection_corpus_is_inert_on_every_platform_and_in_the_web_inbox(tmp_path):
    async with (
        fake_platforms() as (slack, telegram, discord),
        app_world(tmp_path, slack=slack, telegram=telegram, discord=discord) as world,
    ):
        request_ids = []
        for number, entry in enumerate(STRINGS):
            # Two agents, so that neither passes the flood guard's cards a minute (B8).
            key = world.key if number % 2 else world.other_key
            response = await world.create(key=key, **body_for(entry["text"]))
            assert response.status_code == 201, (entry["id"], response.text[:300])
            request_ids.append(response.json()["id"])
        for request_id in request_ids:
            for platform in ("slack", "telegram", "discord"):
                await world.card_ref(request_id, platform)

        problems: list[str] = []
        for entry, request_id in zip(STRINGS, request_ids, strict=True):
            text = entry["text"]
            page = await deny_in_the_inbox(world, request_id, text[:2000])
            if "<" in text and text[:200] in page:
                problems.append(f"web {entry['id']}: the text is in the page unescaped")
            if any(ch in page for ch in HIDDEN):
                problems.append(f"web {entry['id']}: an invisible character is not shown")
            for marker in entry.get("markers", []):
                if marker not in page:
                    problems.append(f"web {entry['id']}: {marker} is not shown")
            assert (await world.get(request_id)).status is Status.DENIED

        async def every_card_denied() -> bool:
            cards = await world.cards()
            return all(
                set(cards.get(request_id, {}).values()) == {"denied"}
                and len(cards[request_id]) == 3
                for request_id in request_ids
            )

        await wait_for(every_card_denied, within=60)

        check_slack(world, problems)
        check_telegram(world, request_ids, problems)
        check_discord(world, problems)
        for entry, request_id in zip(STRINGS, request_ids, strict=True):
            request = await world.get(request_id)
            shown = {
                "slack": (await world.slack_card(request_id)).all_text,
                "telegram": (await world.telegram_card(request_id)).text,
                "discord": (await world.discord_card(request_id)).all_text,
            }
            for platform, text in shown.items():
                if request.payload_sha256[:12] not in text:
                    problems.append(f"{platform} {entry['id']}: the payload hash is not shown")
                for marker in entry.get("markers", []):
                    if marker not in text:
                        problems.append(f"{platform} {entry['id']}: {marker} is not shown")
        assert not problems, "\n".join(problems[:40])

        await world.check()
