"""Clicks decided in the core: ``ApprovalService.handle_click`` and ``reason_prompt``.

Each case posts a real card through the outbox (a recording adapter answers with a
message reference) and clicks it the way an adapter hands a click over.
"""

from __future__ import annotations

import json
from typing import Any

from approvals.clicks import (
    MALFORMED_CLICK,
    WRONG_MESSAGE,
    Click,
    ClickRefused,
    Foreign,
    ReasonPrompt,
    RecentCards,
    click_notice,
)
from approvals.clock import ManualClock
from approvals.machine import Event, Status
from approvals.model import CreateCommand, Verdict
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import AlreadyDecided, Applied, Created, NotAllowed, RefusalCode
from approvals.service import ApprovalService
from approvals.store import SqlStore
from tests.fakes.recording import RecordingAdapter

SLACK_OPS = "slack:channel:C0OPS"
ALICE, BOB, DAVE = "U0ALICE", "U0BOB", "U0DAVE"


_SLACK = RecordingAdapter("slack")
"""One recording Slack for every card, so that each card gets a message id of its own."""


async def posted_card(
    service: ApprovalService, store: SqlStore, clock: ManualClock, **command: Any
) -> tuple[str, dict[str, Any]]:
    """Create a request under the default policy (one card to the ops Slack channel),
    deliver its card, and return the request id and the card's message reference."""
    dispatcher = OutboxDispatcher(store, {"slack": _SLACK}, clock)
    fields = {"agent": "deploy-bot", "action": "deploy.web", "title": "Deploy web"} | command
    created = await service.create(CreateCommand(**fields))
    assert isinstance(created, Created)
    assert await dispatcher.drain() == 1
    [delivery] = await store.query(lambda reads: reads.deliveries(created.request.id))
    assert delivery.ref is not None
    return created.request.id, delivery.ref


def click(
    request_id: str | None,
    message: dict[str, Any] | None,
    *,
    identity: str = ALICE,
    verdict: Verdict = Verdict.APPROVE,
    **fields: Any,
) -> Click:
    return Click(
        platform="slack",
        identity=identity,
        request_id=request_id,
        raw_reference=fields.pop("raw_reference", request_id),
        message=message,
        verdict=verdict,
        **fields,
    )


async def refusals(store: SqlStore) -> list[dict[str, Any]]:
    entries = await store.query(lambda reads: reads.audit_entries())
    return [{"actor": e.actor, **json.loads(e.data)} for e in entries if e.kind == "refused"]


async def status_of(store: SqlStore, request_id: str) -> Status:
    request = await store.query(lambda reads: reads.get_request(request_id))
    assert request is not None
    return request.status


async def test_a_click_on_the_posted_card_is_counted(service, store, clock):
    request_id, ref = await posted_card(service, store, clock)
    outcome = await service.handle_click(click(request_id, ref))
    assert isinstance(outcome, Applied)
    assert outcome.event is Event.APPROVE
    assert outcome.request.decision is not None
    assert outcome.request.decision.by == "alice"
    assert click_notice(outcome) is None  # the card's own edit says it
    assert await refusals(store) == []


async def test_a_deny_with_a_reason_is_counted_with_the_reason_trimmed(service, store, clock):
    request_id, ref = await posted_card(service, store, clock)
    outcome = await service.handle_click(
        click(request_id, ref, identity=BOB, verdict=Verdict.DENY, reason="  not today  ")
    )
    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.DENIED
    assert outcome.request.decision is not None
    assert outcome.request.decision.reason == "not today"


async def test_a_click_from_outside_the_installation_is_refused_and_audited(service, store, clock):
    request_id, ref = await posted_card(service, store, clock)
    foreign = Foreign("foreign_team", "click from workspace T2, not T1", "not our workspace")
    outcome = await service.handle_click(click(request_id, ref, foreign=foreign))
    assert outcome == ClickRefused("foreign_team", "not our workspace")
    assert click_notice(outcome) == "Your click was not counted: not our workspace."
    assert await status_of(store, request_id) is Status.PENDING
    assert await refusals(store) == [
        {
            "actor": f"slack:{ALICE}",
            "code": "foreign_team",
            "detail": "click from workspace T2, not T1",
        }
    ]


async def test_a_button_that_is_not_signoffs_is_refused_and_audited(service, store, clock):
    request_id, ref = await posted_card(service, store, clock)
    outcome = await service.handle_click(click(None, ref, raw_reference="x" * 300))
    assert isinstance(outcome, ClickRefused)
    assert outcome.code == MALFORMED_CLICK
    [refusal] = await refusals(store)
    assert refusal["code"] == MALFORMED_CLICK
    assert len(refusal["detail"]) < 200  # the untrusted reference is cut
    assert await status_of(store, request_id) is Status.PENDING


async def test_a_click_on_another_message_or_another_requests_card_is_refused(
    service, store, clock
):
    first, first_ref = await posted_card(service, store, clock, title="First", params={"n": 1})
    second, second_ref = await posted_card(service, store, clock, title="Second", params={"n": 2})
    elsewhere = {**first_ref, "message": -1}
    for forged in (click(first, elsewhere), click(first, second_ref), click(second, None)):
        outcome = await service.handle_click(forged)
        assert isinstance(outcome, ClickRefused)
        assert outcome.code == WRONG_MESSAGE
    assert [r["code"] for r in await refusals(store)] == [WRONG_MESSAGE] * 3
    assert await status_of(store, first) is Status.PENDING
    assert await status_of(store, second) is Status.PENDING


async def test_the_same_message_on_another_platform_is_not_the_card(service, store, clock):
    request_id, ref = await posted_card(service, store, clock)
    on_telegram = Click("telegram", "100001", request_id, request_id, ref, Verdict.APPROVE)
    outcome = await service.handle_click(on_telegram)
    assert isinstance(outcome, ClickRefused)
    assert outcome.code == WRONG_MESSAGE


async def test_a_card_just_posted_is_recognised_before_its_reference_is_stored(
    service, store, clock
):
    created = await service.create(
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy web")
    )
    assert isinstance(created, Created)
    request_id = created.request.id
    ref = {"target": SLACK_OPS, "message": 41}
    assert isinstance(await service.handle_click(click(request_id, ref)), ClickRefused)
    # What the outbox does the moment the platform answers the send.
    service.recent_cards.remember("slack", ref, request_id)
    outcome = await service.handle_click(click(request_id, ref, identity=BOB))
    assert isinstance(outcome, Applied)


async def test_the_outbox_tells_the_service_about_a_card_as_soon_as_it_is_sent(
    service, store, clock
):
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, recent_cards=service.recent_cards)
    created = await service.create(
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy web")
    )
    assert isinstance(created, Created)
    assert await dispatcher.drain() == 1
    [delivery] = await store.query(lambda reads: reads.deliveries(created.request.id))
    assert delivery.ref is not None
    remembered = click(created.request.id, delivery.ref)
    assert service.recent_cards.is_card_of(remembered)
    assert not service.recent_cards.is_card_of(click("another", delivery.ref))


def test_recent_cards_remember_the_newest_within_capacity():
    cards = RecentCards(capacity=2)
    for message, request_id in (("1", "a"), ("2", "b"), ("3", "c")):
        cards.remember("slack", {"channel": "C1", "ts": message}, request_id)
    assert not cards.is_card_of(click("a", {"channel": "C1", "ts": "1"}))  # the oldest fell out
    assert cards.is_card_of(click("c", {"channel": "C1", "ts": "3"}))
    assert not cards.is_card_of(click("b", {"channel": "C1", "ts": "3"}))  # another request's card


async def test_who_may_decide_is_judged_as_for_any_vote(service, store, clock):
    request_id, ref = await posted_card(service, store, clock, requested_by="bob")
    stranger = await service.handle_click(click(request_id, ref, identity="U0NOBODY"))
    assert isinstance(stranger, NotAllowed)
    assert stranger.code is RefusalCode.UNKNOWN_IDENTITY
    requester = await service.handle_click(click(request_id, ref, identity=BOB))
    assert isinstance(requester, NotAllowed)
    assert requester.code is RefusalCode.REQUESTER
    not_approver = await service.handle_click(click(request_id, ref, identity=DAVE))
    assert isinstance(not_approver, NotAllowed)
    assert not_approver.code is RefusalCode.NOT_AN_APPROVER
    assert [r["code"] for r in await refusals(store)] == [
        "unknown_identity",
        "requester",
        "not_an_approver",
    ]
    assert isinstance(await service.handle_click(click(request_id, ref)), Applied)
    late = await service.handle_click(click(request_id, ref, verdict=Verdict.DENY))
    assert isinstance(late, AlreadyDecided)


async def test_the_reason_form_is_offered_only_to_someone_whose_deny_would_count(
    service, store, clock
):
    request_id, ref = await posted_card(service, store, clock, requested_by="bob")
    prompt = await service.reason_prompt(click(request_id, ref, verdict=Verdict.DENY))
    assert prompt == ReasonPrompt(request_id, "Deploy web", require_reason=False)
    requester = await service.reason_prompt(click(request_id, ref, identity=BOB))
    assert isinstance(requester, NotAllowed)
    assert requester.code is RefusalCode.REQUESTER
    forged = await service.reason_prompt(click(request_id, {**ref, "message": -1}))
    assert isinstance(forged, ClickRefused)
    wrong = f"click on message { ({**ref, 'message': -1}) }, not a card posted for the request"
    assert [(r["code"], r.get("detail")) for r in await refusals(store)] == [
        ("requester", "deny refused before the reason modal"),
        (WRONG_MESSAGE, wrong),
    ]
    assert await status_of(store, request_id) is Status.PENDING  # nothing was counted
