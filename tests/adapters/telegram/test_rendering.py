"""Pure parts of the Telegram adapter: button references, card rendering, toasts, pacing."""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telegram import InlineKeyboardMarkup

from adapters.telegram.callbacks import (
    MAX_CALLBACK_DATA_BYTES,
    ButtonAction,
    ButtonRef,
    decode_button,
    encode_button,
)
from adapters.telegram.pacing import PacingDelay, SendLimit, SendPacer
from adapters.telegram.rendering import (
    MAX_MESSAGE_LENGTH,
    MAX_TOAST_LENGTH,
    PARAMS_TRUNCATED,
    outcome_text,
    render_card,
    truncate,
    utf16_length,
)
from approvals.card import ApprovalCard, CardField
from approvals.machine import Status
from approvals.model import new_request_id
from approvals.outcomes import NotAllowed, NotFound, RefusalCode
from tests.fakes.telegram import HtmlError, parse_html

PUBLIC_URL = "https://signoff.example.org"


def make_card(**changes: Any) -> ApprovalCard:
    card = ApprovalCard(
        request_id=new_request_id(),
        title="Deploy web",
        agent="deploy-bot",
        action="deploy.web",
        details="",
        fields=(CardField("env", '"prod"'),),
        payload_sha256="ab" * 32,
        policy="deploy",
        level=0,
        deadline=datetime(2030, 1, 1, 12, 30, tzinfo=UTC),
        status=Status.PENDING,
        status_line="Pending: waiting for a decision",
        buttons=True,
        require_reason=False,
    )
    return replace(card, **changes)


def actions_of(keyboard: InlineKeyboardMarkup | None) -> list[ButtonAction]:
    """The action behind each button of ``keyboard``, row by row."""
    assert keyboard is not None
    actions = []
    for row in keyboard.inline_keyboard:
        for button in row:
            assert isinstance(button.callback_data, str)
            ref = decode_button(button.callback_data)
            assert ref is not None
            actions.append(ref.action)
    return actions


# -- button references ---------------------------------------------------------------------------


EXTRAS = {
    ButtonAction.CONFIRM: "zzzzzzz." + "A" * 16,  # the longest confirmation token signoff makes
    ButtonAction.CANCEL: str(2**63),  # a Telegram user id
}


@pytest.mark.parametrize("action", list(ButtonAction))
def test_button_references_round_trip_within_64_bytes(action):
    ref = ButtonRef(action, new_request_id(), EXTRAS.get(action))
    data = encode_button(ref)
    assert len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
    assert decode_button(data) == ref


@pytest.mark.parametrize(
    "data",
    [
        "so1:c:abc",  # confirm without its token
        "so1:c:abc:not a token",
        "so1:c:abc:zz.AAAA:more",
        "so1:x:abc:alice",  # cancel names a user id
        "so1:a:abc:zz.AAAA",  # approve carries nothing more
    ],
)
def test_a_confirmation_reference_out_of_shape_is_not_ours(data):
    assert decode_button(data) is None


def test_the_longest_request_id_that_fits():
    fits = "a" * (MAX_CALLBACK_DATA_BYTES - len("so1:a:"))
    decoded = decode_button(encode_button(ButtonRef(ButtonAction.APPROVE, fits)))
    assert decoded is not None
    assert decoded.request_id == fits
    with pytest.raises(ValueError, match="64 bytes"):
        encode_button(ButtonRef(ButtonAction.APPROVE, fits + "a"))


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "garbage",
        "so1:a",
        "so2:a:abc",
        "so1:z:abc",
        "so1:a:abc:extra",
        "so1:a:abc def",
        "so1:a:ünïcode",
        "so1:a:" + "a" * 59,
    ],
)
def test_malformed_button_data_is_refused(data):
    assert decode_button(data) is None


# -- cards -----------------------------------------------------------------------------------


def test_a_card_shows_everything_an_approver_needs():
    card = make_card(details="Rolls out 1.2.3", note="Escalated to level 1: carol")
    rendered = render_card(card, PUBLIC_URL)
    text, entities = parse_html(rendered.text)
    assert utf16_length(text) == rendered.length
    for expected in (
        "Approval needed",
        "Deploy web",
        "deploy-bot",
        "deploy.web",
        "Rolls out 1.2.3",
        'env: "prod"',
        "abababababab",
        "deploy",
        "2030-01-01 12:30 UTC",
        "Escalated to level 1: carol",
        "Pending: waiting for a decision",
    ):
        assert expected in text
    links = [e["url"] for e in entities if e["type"] == "text_link"]
    assert links == [f"{PUBLIC_URL}/requests/{card.request_id}"]
    assert actions_of(rendered.keyboard) == [
        ButtonAction.APPROVE,
        ButtonAction.DENY,
        ButtonAction.DENY_WITH_REASON,
    ]


def test_a_final_card_has_no_buttons_and_says_so():
    card = make_card(status=Status.APPROVED, status_line="Approved by alice", buttons=False)
    rendered = render_card(card, PUBLIC_URL)
    assert rendered.keyboard is None
    assert "Approved by alice" in parse_html(rendered.text)[0]


def test_a_policy_that_needs_a_reason_offers_only_deny_with_reason():
    rendered = render_card(make_card(require_reason=True), PUBLIC_URL)
    assert actions_of(rendered.keyboard) == [
        ButtonAction.APPROVE,
        ButtonAction.DENY_WITH_REASON,
    ]


def test_a_request_id_too_long_for_a_button_gets_no_buttons_but_keeps_its_link():
    rendered = render_card(make_card(request_id="r" * 64), PUBLIC_URL)
    assert rendered.keyboard is None
    assert f"/requests/{'r' * 64}" in rendered.text


@pytest.mark.parametrize(
    "value",
    ["x" * 100_000, "🙂" * 50_000, "a" * 4_000 + "🙂" * 10, "<&>" * 20_000, "\u202e" * 5_000],
)
def test_huge_params_are_cut_to_the_limit_with_hash_and_link_kept(value):
    fields = tuple(CardField(f"key{n}", value) for n in range(3))
    card = make_card(fields=fields, title=value, details=value, agent=value, status_line=value)
    rendered = render_card(card, PUBLIC_URL)
    text, entities = parse_html(rendered.text)
    assert utf16_length(text) == rendered.length <= MAX_MESSAGE_LENGTH
    assert PARAMS_TRUNCATED in text
    assert "abababababab" in text
    assert entities[-1]["url"] == f"{PUBLIC_URL}/requests/{card.request_id}"
    text.encode("utf-8")  # no lone surrogate from a split emoji


@pytest.mark.parametrize("limit", range(0, 8))
def test_truncation_never_splits_an_emoji(limit):
    cut = truncate("🙂a🙂b🙂c", limit)
    assert utf16_length(cut) <= max(limit, 1)
    cut.encode("utf-8")


def test_agent_markup_is_escaped_and_kept_inside_code():
    evil = '</code><a href="http://evil">@everyone</a>'
    rendered = render_card(make_card(title=evil), PUBLIC_URL)
    assert html.escape(evil, quote=False) in rendered.text
    text, entities = parse_html(rendered.text)
    assert evil in text
    assert {e["type"] for e in entities} <= {"bold", "italic", "code", "pre", "text_link"}


def test_the_fake_rejects_html_telegram_would_reject():
    # The fake is only useful if it fails like Telegram on broken markup.
    for broken in ("<b>open", "</b>", "<script>x</script>", "a & b &bogus;", "1 < 2", "<a>x</a>"):
        with pytest.raises(HtmlError):
            parse_html(broken)
    _text, entities = parse_html("ping @everyone at https://evil.example.com")
    assert {e["type"] for e in entities} == {"mention", "url"}


# -- toasts ----------------------------------------------------------------------------------


def test_toasts_say_what_the_core_says_within_the_toast_limit():
    assert outcome_text(NotAllowed(RefusalCode.NOT_AN_APPROVER, "erin is not...")) == (
        "Your click was not counted: erin is not...."
    )
    assert outcome_text(NotAllowed(RefusalCode.INVALID, "the reason is too long")) == (
        "Your click was not counted: the reason is too long."
    )
    assert outcome_text(NotFound("abc")) == "This request no longer exists."
    assert len(outcome_text(NotAllowed(RefusalCode.INVALID, "x" * 500))) <= MAX_TOAST_LENGTH


# -- pacing ----------------------------------------------------------------------------------


async def send(pacer: SendPacer, chat_id: int) -> None:
    async with pacer.slot(chat_id):
        pass


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_group_window_holds_and_a_long_wait_goes_back_to_the_outbox():
    ticks = Ticks()
    pacer = SendPacer(
        per_chat=timedelta(0),
        group=SendLimit(3, timedelta(seconds=60)),
        overall=SendLimit(100, timedelta(seconds=1)),
        max_wait=timedelta(seconds=5),
        monotonic=ticks,
    )
    for _ in range(3):
        await send(pacer, -100)
    with pytest.raises(PacingDelay) as delay:
        await send(pacer, -100)
    assert delay.value.wait == timedelta(seconds=60)
    await send(pacer, 100)  # a private chat is not a group
    await send(pacer, -200)  # another group has its own window
    ticks.now += 60
    await send(pacer, -100)


async def test_the_overall_limit_spans_chats():
    ticks = Ticks()
    pacer = SendPacer(
        per_chat=timedelta(0),
        overall=SendLimit(2, timedelta(seconds=10)),
        max_wait=timedelta(seconds=1),
        monotonic=ticks,
    )
    await send(pacer, 1)
    await send(pacer, 2)
    with pytest.raises(PacingDelay, match="overall"):
        await send(pacer, 3)


async def test_one_chat_gets_one_message_per_interval_and_others_are_not_held_up():
    ticks = Ticks()
    pacer = SendPacer(
        per_chat=timedelta(seconds=10),
        max_wait=timedelta(seconds=1),
        monotonic=ticks,
    )
    await send(pacer, 100)
    with pytest.raises(PacingDelay, match="chat 100 interval"):
        await send(pacer, 100)
    await send(pacer, 200)
    ticks.now += 10
    await send(pacer, 100)


async def test_a_send_counts_from_when_telegram_answered():
    ticks = Ticks()
    pacer = SendPacer(
        per_chat=timedelta(0),
        overall=SendLimit(1, timedelta(seconds=1)),
        max_wait=timedelta(seconds=0.05),
        monotonic=ticks,
    )
    async with pacer.slot(1):
        ticks.now += 0.5  # the request took half a second
    ticks.now += 0.9
    with pytest.raises(PacingDelay) as delay:
        async with pacer.slot(2):
            pass
    assert delay.value.wait.total_seconds() == pytest.approx(0.1)
