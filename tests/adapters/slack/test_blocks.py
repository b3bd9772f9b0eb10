"""Block Kit rendering: Slack's limits held, agent text escaped, button values opaque."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.slack.blocks import (
    ELLIPSIS,
    MAX_BLOCKS,
    MAX_BUTTON_TEXT,
    MAX_FIELD_TEXT,
    MAX_FIELDS_PER_SECTION,
    MAX_MESSAGE_TEXT,
    MAX_PRIVATE_METADATA,
    MAX_SECTION_TEXT,
    escape,
    fit,
    metadata,
    parse_metadata,
    reason_modal,
    render_card,
    visible,
)
from adapters.slack.references import (
    MAX_ACTION_ID,
    MAX_BUTTON_VALUE,
    decode_value,
    encode_value,
)
from approvals.card import ApprovalCard, CardField
from approvals.machine import Status
from tests.adapters.slack.conftest import PUBLIC_URL


def card_with(text: str, **changes: Any) -> ApprovalCard:
    base = ApprovalCard(
        request_id="req_123-abc",
        title=text,
        agent=text,
        action=text,
        details=text,
        fields=(CardField(label=text, value=json.dumps(text)), CardField("env", '"prod"')),
        payload_sha256="ab" * 32,
        policy="default",
        level=0,
        deadline=datetime(2030, 1, 1, 12, 30, tzinfo=UTC),
        status=Status.PENDING,
        status_line=f"Denied by bob (reason: {text})",
        buttons=True,
        require_reason=False,
        note=text,
    )
    return replace(base, **changes)


def assert_within_slack_limits(message) -> None:
    assert len(message.text) <= MAX_MESSAGE_TEXT
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if "text" in block:
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
        fields = block.get("fields", [])
        assert len(fields) <= MAX_FIELDS_PER_SECTION
        for item in fields:
            assert len(item["text"]) <= MAX_FIELD_TEXT
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["text"]["text"]) <= MAX_BUTTON_TEXT
                assert len(element["action_id"]) <= MAX_ACTION_ID
                assert len(element["value"]) <= MAX_BUTTON_VALUE


def test_bidi_and_zero_width_characters_are_shown():
    assert visible("a\u202eb\u200bc") == "a⟨U+202E⟩b⟨U+200B⟩c"
    message = render_card(card_with("invoice\u202egpj.exe"), public_url=PUBLIC_URL)
    assert "invoice⟨U+202E⟩gpj.exe" in message.blocks[0]["text"]["text"]


def test_escape_turns_markup_into_entities():
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


@pytest.mark.parametrize("limit", [1, 2, 5, 10, 11, 12, 50])
def test_fit_never_exceeds_the_limit_or_splits_an_entity(limit):
    for text in ["<" * 40, "a<b>c&d" * 10, "😀" * 40, "plain text " * 10]:
        shown = fit(text, limit)
        assert len(shown) <= limit
        body = shown.removesuffix(ELLIPSIS)
        assert re.sub(r"&(amp|lt|gt);", "", body).count("&") == 0
        assert "<" not in shown


def test_long_values_are_cut_and_link_to_the_inbox():
    card = card_with("ok", fields=(CardField("sql", json.dumps("SELECT 1; " * 500)),))
    message = render_card(card, public_url=PUBLIC_URL)
    payload = json.dumps(message.blocks, ensure_ascii=False)
    assert ELLIPSIS in payload
    assert f"<{PUBLIC_URL}/requests/req_123-abc|Full values in the signoff inbox>" in payload


def test_many_params_are_capped_and_counted():
    fields = tuple(CardField(f"p{i}", str(i)) for i in range(45))
    message = render_card(card_with("ok", fields=fields), public_url=PUBLIC_URL)
    assert_within_slack_limits(message)
    assert "25 more parameters" in json.dumps(message.blocks)


def test_final_card_has_no_buttons():
    card = card_with("ok", buttons=False, status=Status.APPROVED, status_line="Approved by bob")
    message = render_card(card, public_url=PUBLIC_URL)
    assert all(block["type"] != "actions" for block in message.blocks)
    assert "Approved by bob" in message.text


def test_required_reason_makes_deny_open_the_modal():
    message = render_card(card_with("ok", require_reason=True), public_url=PUBLIC_URL)
    actions = next(b for b in message.blocks if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == [
        "signoff_approve",
        "signoff_deny_reason",
    ]
    assert {e["value"] for e in actions["elements"]} == {"so1:req_123-abc"}


def test_button_values_round_trip_and_reject_everything_else():
    assert decode_value(encode_value("AbC_-9")) == "AbC_-9"
    for bad in [None, 5, "", "so1:", "so1:a/b", "so1:" + "a" * 65, "xso1:a", "SO1:a"]:
        assert decode_value(bad) is None
    with pytest.raises(ValueError, match="cannot be put"):
        encode_value("a b")


def test_reason_modal_and_its_metadata():
    meta = metadata("so1:abc", "C0OPS", "1700000001.000001")
    assert len(meta) <= MAX_PRIVATE_METADATA
    assert parse_metadata(meta) == ("so1:abc", "C0OPS", "1700000001.000001")
    for bad in [None, "", "[]", "{", '{"value": "so1:a"}', "x" * (MAX_PRIVATE_METADATA + 1)]:
        assert parse_metadata(bad) is None
    view = reason_modal("<!channel> drop", private_metadata=meta, require_reason=True)
    assert view["blocks"][1]["optional"] is False
    assert "<!channel>" not in json.dumps(view)
    with pytest.raises(ValueError, match="private_metadata"):
        reason_modal("t", private_metadata="x" * (MAX_PRIVATE_METADATA + 1), require_reason=False)
