"""Adaptive Card rendering: what a card shows, its buttons, its size, agent text kept inert."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from microsoft_teams.cards import AdaptiveCard

from adapters.teams.cards import (
    APPROVE,
    CARD_BUDGET,
    DENY,
    DENY_WITH_REASON,
    REASON_INPUT,
    card_size,
    render_card,
    render_notice,
)
from approvals.card import ApprovalCard, CardField
from approvals.machine import Status

URL = "http://127.0.0.1:8080"
REQUEST_ID = "Zx9_-abcdefghijklmnopq"


def a_card(**changes: Any) -> ApprovalCard:
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


def elements(node: Any) -> Iterator[dict[str, Any]]:
    """Every element of a card, nested ones (show-card forms, inlines) included."""
    if isinstance(node, dict):
        if "type" in node:
            yield node
        for value in node.values():
            yield from elements(value)
    elif isinstance(node, list):
        for item in node:
            yield from elements(item)


def texts_of(card: dict[str, Any], kind: str) -> list[str]:
    return [element["text"] for element in elements(card) if element["type"] == kind]


def executes(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [element for element in elements(card) if element["type"] == "Action.Execute"]


def test_a_pending_card_shows_the_request_and_offers_three_decisions() -> None:
    card = render_card(a_card(), public_url=URL)
    runs = " ".join(texts_of(card, "TextRun"))
    for shown in ("Drop table users", "deploy-bot", "db.drop_table", "prod-db", '"users"'):
        assert shown in runs
    assert "Level: " in runs
    assert "2030-01-01 12:00 UTC" in runs
    assert [(a["title"], a["data"]) for a in executes(card)] == [
        ("Approve", {"action": APPROVE, "request": REQUEST_ID}),
        ("Deny", {"action": DENY, "request": REQUEST_ID}),
        ("Deny", {"action": DENY_WITH_REASON, "request": REQUEST_ID}),
    ]
    [reason_box] = [e for e in elements(card) if e["type"] == "Input.Text"]
    assert reason_box["id"] == REASON_INPUT
    assert reason_box["isRequired"] is False
    [link] = [e for e in elements(card) if e["type"] == "Action.OpenUrl"]
    assert link["url"] == f"{URL}/requests/{REQUEST_ID}"
    # The SDK's own model accepts it (what the invoke answer and the send carry).
    AdaptiveCard.model_validate(card)


def test_the_person_the_agent_acts_for_is_shown_verbatim() -> None:
    card = render_card(a_card(requested_by="[carol](https://evil.example)"), public_url=URL)
    assert "On behalf of: [carol](https://evil.example)" in " ".join(
        "".join(run for run in texts_of(block, "TextRun"))
        for block in elements(card)
        if block["type"] == "RichTextBlock"
    )
    assert "On behalf of" not in str(render_card(a_card(), public_url=URL))


def test_a_policy_that_needs_a_reason_has_no_plain_deny() -> None:
    card = render_card(a_card(require_reason=True), public_url=URL)
    assert [a["data"]["action"] for a in executes(card)] == [APPROVE, DENY_WITH_REASON]
    [reason_box] = [e for e in elements(card) if e["type"] == "Input.Text"]
    assert reason_box["isRequired"] is True


def test_a_decided_card_has_no_buttons_but_its_outcome() -> None:
    card = render_card(
        a_card(status=Status.DENIED, buttons=False, status_line="Denied by bob"),
        public_url=URL,
    )
    assert executes(card) == []
    assert "Denied by bob" in " ".join(texts_of(card, "TextRun"))


def test_agent_text_only_ever_fills_text_runs() -> None:
    hostile = "[click me](https://evil.example) **bold** <at>alice</at> @everyone \u202egpj.exe"
    card = render_card(
        a_card(
            title=hostile,
            agent=hostile,
            action=hostile,
            details=hostile,
            fields=(CardField(hostile, hostile),),
            note=hostile,
        ),
        public_url=URL,
    )
    # TextBlocks render Markdown: none holds agent text.
    assert not any("evil" in text for text in texts_of(card, "TextBlock"))
    runs = texts_of(card, "TextRun")
    assert any("[click me](https://evil.example)" in text for text in runs)
    # Direction overrides are shown, not obeyed.
    assert not any("\u202e" in text for text in runs)
    assert any("⟨U+202E⟩" in text for text in runs)
    assert "entities" not in str(card)
    assert "mention" not in str(card).lower()


def test_a_huge_request_stays_within_the_budget_and_links_to_the_rest() -> None:
    fields = tuple(CardField(f"p{index}", "x" * 5000) for index in range(40))
    card = render_card(a_card(details="d" * 10_000, fields=fields), public_url=URL)
    assert card_size(card) <= CARD_BUDGET
    [link] = [e for e in elements(card) if e["type"] == "Action.OpenUrl"]
    assert "more parameters" in link["title"]
    assert any("x…" in text for text in texts_of(card, "TextRun"))


def test_wide_characters_count_by_their_encoded_size() -> None:
    fields = tuple(CardField(f"p{index}", "💥" * 900) for index in range(30))
    card = render_card(a_card(title="💥" * 500, fields=fields), public_url=URL)
    assert card_size(card) <= CARD_BUDGET
    assert len(str(card).encode("utf-16-le")) // 2 <= 2 * CARD_BUDGET


def test_a_notice_is_a_card_with_the_text_verbatim() -> None:
    notice = render_notice("Reminder: [x](https://evil.example) still waiting")
    assert texts_of(notice, "TextRun") == ["Reminder: [x](https://evil.example) still waiting"]
    assert texts_of(notice, "TextBlock") == []
