"""Rendering and references: pure functions, Discord's limits, agent text made inert."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import discord
import pytest

from adapters.discord.references import MAX_CUSTOM_ID, Reference, Verb, decode, encode
from adapters.discord.rendering import (
    MAX_BUTTON_LABEL,
    MAX_CONTENT,
    MAX_EMBED_FIELDS,
    MAX_EMBED_TITLE,
    MAX_EMBED_TOTAL,
    MAX_FIELD_NAME,
    MAX_FIELD_VALUE,
    MAX_LABEL_TEXT,
    MAX_MODAL_TITLE,
    escape,
    fit,
    fit_and_tell,
    reason_modal,
    render_card,
    render_notice,
    visible,
)
from approvals.card import ApprovalCard, CardField
from approvals.machine import Status

URL = "http://127.0.0.1:8080"
REQUEST_ID = "Zx9_-abcdefghijklmnopq"


def a_card(**changes) -> ApprovalCard:
    card = ApprovalCard(
        request_id=REQUEST_ID,
        title="Drop table users",
        agent="deploy-bot",
        action="db.drop_table",
        details="Cleaning up after the migration.",
        fields=(CardField("table", '"users"'), CardField("env", '"prod"')),
        payload_sha256="ab" * 32,
        policy="prod-db",
        level=0,
        deadline=datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
        status=Status.PENDING,
        status_line="Pending: waiting for a decision",
        buttons=True,
        require_reason=False,
    )
    return replace(card, **changes)


def check_limits(embed: discord.Embed) -> None:
    data = embed.to_dict()
    assert len(embed) <= MAX_EMBED_TOTAL
    assert len(data["title"]) <= MAX_EMBED_TITLE
    assert len(data["fields"]) <= MAX_EMBED_FIELDS
    for item in data["fields"]:
        assert 0 < len(item["name"]) <= MAX_FIELD_NAME
        assert 0 < len(item["value"]) <= MAX_FIELD_VALUE


def test_references_round_trip_and_fit_discords_limit():
    token = "zzzzzzz." + "A" * 16  # the longest confirmation token signoff makes
    for verb in Verb:
        carried = token if verb is Verb.CONFIRM_SUBMITTED else None
        custom_id = encode(verb, REQUEST_ID, token=carried)
        assert len(custom_id) <= MAX_CUSTOM_ID
        assert decode(custom_id) == Reference(verb, REQUEST_ID, token=carried)
    assert decode(f"so1:c:{REQUEST_ID}") is None  # a confirmation without its token
    assert decode(f"so1:a:{REQUEST_ID}:{token}") is None  # a button carries no token
    longest = encode(Verb.APPROVE, "a" * 64)
    assert len(longest) <= MAX_CUSTOM_ID
    with pytest.raises(ValueError, match="cannot be put in a custom_id"):
        encode(Verb.APPROVE, "a" * 65)
    with pytest.raises(ValueError, match="cannot be put in a custom_id"):
        encode(Verb.APPROVE, "id with spaces")


@pytest.mark.parametrize(
    "custom_id",
    [None, 5, "", "so1", "so1:a", "so1:a:", "so1:z:abc", "so2:a:abc", "so1:a:a/b", "x" * 101],
)
def test_foreign_custom_ids_decode_to_nothing(custom_id):
    assert decode(custom_id) is None


def test_card_layout():
    rendered = render_card(a_card(), public_url=URL)
    data = rendered.embed.to_dict()
    assert data["title"] == "Approval request: Drop table users"
    assert data["url"] == f"{URL}/requests/{REQUEST_ID}"
    names = [f["name"] for f in data["fields"]]
    assert names == [
        "Agent",
        "Action",
        "Policy",
        "Level",
        "Deadline",
        "Payload SHA-256",
        "table",
        "env",
        "Status",
    ]
    assert rendered.content == "Approval needed: Drop table users"
    assert "`abababababab`" in str(data["fields"][5]["value"])
    assert "2030-01-01 12:00 UTC" in str(data["fields"][4]["value"])
    assert "[Open in the signoff inbox]" in data["description"]
    assert data["footer"]["text"] == f"signoff request {REQUEST_ID}"
    labels = [(b.label, b.custom_id) for b in rendered.buttons]
    assert labels == [
        ("Approve", f"so1:a:{REQUEST_ID}"),
        ("Deny", f"so1:d:{REQUEST_ID}"),
        ("Deny with reason…", f"so1:r:{REQUEST_ID}"),
    ]
    assert all(len(b.label) <= MAX_BUTTON_LABEL for b in rendered.buttons)
    check_limits(rendered.embed)


def test_required_reason_makes_deny_open_the_modal():
    rendered = render_card(a_card(require_reason=True), public_url=URL)
    assert [(b.label, b.custom_id) for b in rendered.buttons] == [
        ("Approve", f"so1:a:{REQUEST_ID}"),
        ("Deny…", f"so1:r:{REQUEST_ID}"),
    ]


def test_final_card_has_no_buttons_and_says_the_outcome():
    card = a_card(status=Status.DENIED, status_line="Denied by carol", buttons=False)
    rendered = render_card(card, public_url=URL)
    assert rendered.buttons == ()
    assert rendered.content == "Drop table users: Denied by carol"
    status = rendered.embed.to_dict()["fields"][-1]
    assert status == {"name": "Status", "value": "**Denied**: Denied by carol", "inline": False}
    assert rendered.embed.colour == discord.Colour.red()


def test_note_is_shown():
    rendered = render_card(a_card(note="Escalated to level 1: carol"), public_url=URL)
    fields = rendered.embed.to_dict()["fields"]
    assert fields[-2] == {"name": "Note", "value": "Escalated to level 1: carol", "inline": False}


def test_huge_and_many_params_stay_within_limits_and_link_to_the_inbox():
    fields = tuple(CardField(f"key{n}" * 40, "v" * 5000) for n in range(40))
    card = a_card(title="t" * 100_000, details="d" * 100_000, agent="a" * 1000, fields=fields)
    rendered = render_card(card, public_url=URL)
    check_limits(rendered.embed)
    data = rendered.embed.to_dict()
    assert len(rendered.content) <= MAX_CONTENT
    assert "more parameters and the full values in the signoff inbox" in data["description"]
    assert f"({URL}/requests/{REQUEST_ID})" in data["description"]
    assert "`abababababab`" in str(data["fields"][5]["value"])
    assert data["fields"][-1]["name"] == "Status"


def test_cut_values_point_to_the_inbox():
    rendered = render_card(a_card(details="x" * 5000), public_url=URL)
    assert "[Full values in the signoff inbox]" in rendered.embed.to_dict()["description"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("@everyone", "@\u200beveryone"),
        ("@here", "@\u200bhere"),
        ("<@123456789012345678>", "\\<@\u200b123456789012345678\\>"),
        ("<@&123456789012345678>", "\\<@\u200b&123456789012345678\\>"),
        ("<#300001>", "\\<\\#300001\\>"),
        ("[good](http://evil)", "\\[good\\]\\(http://evil\\)"),
        ("**bold**", "\\*\\*bold\\*\\*"),
        ("||spoiler||", "\\|\\|spoiler\\|\\|"),
        ("# heading", "\\# heading"),
        ("a\\b", "a\\\\b"),
    ],
)
def test_escape_makes_markdown_and_mentions_inert(text, shown):
    assert escape(text) == shown


def test_invisible_characters_are_shown():
    assert visible("a\u202eb\u2066c\u200bd\ufeff") == "a⟨U+202E⟩b⟨U+2066⟩c⟨U+200B⟩d⟨U+FEFF⟩"
    assert fit("x\u202ey", 100) == "x⟨U+202E⟩y"


def test_a_cut_never_leaves_a_dangling_escape():
    for limit in range(2, 12):
        shown, cut = fit_and_tell("*" * 50, limit)
        assert cut
        assert len(shown) <= limit
        body = shown.removesuffix("…")
        assert (len(body) - len(body.rstrip("\\"))) % 2 == 0


def test_emoji_at_the_boundary():
    shown, cut = fit_and_tell("👍" * 300, 250)
    assert cut
    assert len(shown) == 250


def test_notice_and_modal():
    assert render_notice("already approved by <@1> @here") == (
        "already approved by \\<@1\\> @\u200bhere"
    )
    modal = reason_modal(REQUEST_ID, require_reason=True)
    assert modal.custom_id == f"so1:m:{REQUEST_ID}"
    assert modal.required
    assert len(modal.title) <= MAX_MODAL_TITLE
    assert len(modal.label) <= MAX_LABEL_TEXT
    assert not reason_modal(REQUEST_ID, require_reason=False).required
