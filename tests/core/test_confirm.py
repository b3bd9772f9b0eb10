"""Step-up for high risk: an approval under a ``confirm`` policy needs an explicit confirmation.

The first Approve counts nothing: the core answers it with a confirmation to show (the
describe line, the risk, the params) carrying a token bound to the person, the request and
the payload; only an approval carrying a genuine, unexpired token counts. Anything else is
refused as ``unconfirmed_approval``, audited, and the request stays pending. The receipt of
a request people approved under such a policy says ``confirmed: true``. Each case runs on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from approvals.clicks import Click, ConfirmPrompt
from approvals.clock import ManualClock
from approvals.confirm import CONFIRM_TTL, sign_confirmation
from approvals.describe import DescribeTemplate
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Applied, Created, NotAllowed, RefusalCode
from approvals.policy import EditsRule, Level, Match, Policy, PolicySet, Risk
from approvals.receipts import ReceiptSigner
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from signoff_client import verify_receipt
from tests.fakes.recording import RecordingAdapter
from tests.world import make_directory

LEVEL = Level(approvers=("alice", "bob", "dave"), notify=("ops-slack",), timeout=timedelta(hours=1))
PAY = CreateCommand(
    agent="pay-bot",
    action="pay.wire",
    title="Wire money",
    params={"amount": 1200, "iban": "DE89370400440532013000"},
)
UNCONFIRMED = RefusalCode.UNCONFIRMED


@pytest.fixture
def rules() -> Rules:
    return Rules(
        policies=PolicySet(
            (
                Policy(
                    name="payments",
                    match=Match(actions=("pay.*",)),
                    levels=(LEVEL,),
                    risk=Risk.CRITICAL,
                    describe=DescribeTemplate.parse("Pay {params.amount} to {params.iban}"),
                    edits=EditsRule.ALLOWED,
                ),
                Policy(
                    name="payroll",
                    match=Match(actions=("payroll.*",)),
                    levels=(LEVEL,),
                    risk=Risk.HIGH,
                    confirm=True,
                    quorum=2,
                ),
                Policy(
                    name="drills",
                    match=Match(actions=("drill.*",)),
                    levels=(LEVEL,),
                    risk=Risk.CRITICAL,
                    confirm=False,
                ),
                Policy(name="default", levels=(LEVEL,)),
            )
        ),
        directory=make_directory(),
    )


async def create(service: ApprovalService, command: CreateCommand = PAY) -> str:
    created = await service.create(command)
    assert isinstance(created, Created), created
    return created.request.id


def approve(request_id: str, identity: str = "U0ALICE", **fields: Any) -> VoteCommand:
    return VoteCommand(request_id, "slack", identity, Verdict.APPROVE, **fields)


async def confirmation(service: ApprovalService, command: VoteCommand) -> ConfirmPrompt:
    prompt = await service.confirm_step(command)
    assert isinstance(prompt, ConfirmPrompt), prompt
    return prompt


async def audit(store: SqlStore, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def assert_refused_and_pending(
    service: ApprovalService, store: SqlStore, request_id: str, outcome: object
) -> None:
    assert isinstance(outcome, NotAllowed), outcome
    assert outcome.code is UNCONFIRMED
    request = await service.get(request_id)
    assert request is not None
    assert request.status is Status.PENDING
    assert request.votes == ()
    kind, data = (await audit(store, request_id))[-1]
    assert kind == "refused"
    assert data["code"] == "unconfirmed_approval"


async def test_an_approval_without_a_confirmation_is_refused_audited_and_counts_nothing(
    service, store
):
    request_id = await create(service)

    outcome = await service.vote(approve(request_id))

    await assert_refused_and_pending(service, store, request_id, outcome)
    assert "confirmed" in outcome.message
    assert (await audit(store, request_id))[-1][1]["confirm_token"] == "missing"


async def test_a_confirmed_approval_decides_and_its_audit_and_receipt_say_confirmed(
    service, store, clock
):
    request_id = await create(service)
    prompt = await confirmation(service, approve(request_id))

    outcome = await service.vote(approve(request_id, confirm_token=prompt.token))

    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.APPROVED
    kind, data = (await audit(store, request_id))[-1]
    assert (kind, data["confirmed"]) == ("decided", True)
    signer = ReceiptSigner(store, clock)
    signed = await signer.sign(outcome.request)
    assert signed["receipt"]["confirmed"] is True
    keys = {key.key_id: key.public_key for key in await signer.keys()}
    checked = verify_receipt(
        signed, PAY.action, PAY.params, keys, request_id=request_id, now=clock.now()
    )
    assert checked["confirmed"] is True


async def test_the_confirmation_shows_the_risk_the_describe_line_and_the_params(service):
    request_id = await create(service)

    prompt = await confirmation(service, approve(request_id))

    assert prompt.request_id == request_id
    assert prompt.card.risk is Risk.CRITICAL
    assert prompt.card.summary == "Pay 1200 to DE89370400440532013000"
    assert {field.label for field in prompt.card.fields} == {"amount", "iban"}
    request = await service.get(request_id)
    assert request is not None
    assert prompt.payload_sha256 == request.payload_sha256
    assert len(prompt.token) <= 24  # room for it in a Telegram button's 64 bytes


@pytest.mark.parametrize(
    "whose",
    ["another person's", "another request's", "a tampered", "a garbage", "an empty"],
)
async def test_a_confirmation_that_is_not_this_persons_for_this_request_is_refused(
    service, store, whose
):
    request_id = await create(service)
    other_id = await create(service, replace(PAY, params={"amount": 1}))
    token = {
        "another person's": (await confirmation(service, approve(request_id, "U0BOB"))).token,
        "another request's": (await confirmation(service, approve(other_id))).token,
        "a tampered": (await confirmation(service, approve(request_id))).token[:-2] + "AA",
        "a garbage": "zz.not-a-token!",
        "an empty": "",
    }[whose]

    outcome = await service.vote(approve(request_id, confirm_token=token))

    await assert_refused_and_pending(service, store, request_id, outcome)


async def test_a_confirmation_expires_after_a_few_minutes(service, store, clock: ManualClock):
    request_id = await create(service)
    prompt = await confirmation(service, approve(request_id))
    assert prompt.expires_at == clock.now() + CONFIRM_TTL

    clock.advance(CONFIRM_TTL)
    outcome = await service.vote(approve(request_id, confirm_token=prompt.token))

    await assert_refused_and_pending(service, store, request_id, outcome)
    assert (await audit(store, request_id))[-1][1]["confirm_token"] == "given"
    fresh = await confirmation(service, approve(request_id))
    assert isinstance(await service.vote(approve(request_id, confirm_token=fresh.token)), Applied)


async def test_a_confirmation_never_outlives_the_request(service, clock: ManualClock):
    request_id = await create(service, replace(PAY, timeout=timedelta(minutes=2)))

    prompt = await confirmation(service, approve(request_id))

    request = await service.get(request_id)
    assert request is not None
    assert prompt.expires_at == request.deadline < clock.now() + CONFIRM_TTL


async def test_a_confirmation_of_the_original_params_does_not_approve_an_edit(service, store):
    request_id = await create(service)
    original = await confirmation(service, approve(request_id))
    edited = {"amount": 12, "iban": "DE89370400440532013000"}

    outcome = await service.vote(
        approve(request_id, edited_params=edited, confirm_token=original.token)
    )

    await assert_refused_and_pending(service, store, request_id, outcome)
    prompt = await confirmation(service, approve(request_id, edited_params=edited))
    assert prompt.payload_sha256 != original.payload_sha256
    outcome = await service.vote(
        approve(request_id, edited_params=edited, confirm_token=prompt.token)
    )
    assert isinstance(outcome, Applied)
    assert outcome.request.edited_params == edited


async def test_a_key_other_than_the_installations_signs_no_valid_confirmation(service, store):
    request_id = await create(service)
    request = await service.get(request_id)
    assert request is not None
    forged = sign_confirmation(
        b"\x00" * 32,
        request_id=request_id,
        actor="slack:U0ALICE",
        payload_sha256=request.payload_sha256,
        expires_at=request.deadline,
    )

    outcome = await service.vote(approve(request_id, confirm_token=forged))

    await assert_refused_and_pending(service, store, request_id, outcome)


async def test_deny_never_needs_a_confirmation(service):
    request_id = await create(service)
    deny = VoteCommand(request_id, "slack", "U0ALICE", Verdict.DENY)

    assert await service.confirm_step(deny) is None
    outcome = await service.vote(deny)

    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.DENIED


@pytest.mark.parametrize(
    ("action", "needs"),
    [("pay.wire", True), ("payroll.run", True), ("drill.run", False), ("deploy.web", False)],
)
async def test_confirm_defaults_to_the_risk_and_a_policy_may_say_otherwise(service, action, needs):
    request_id = await create(service, replace(PAY, action=action))

    prompt = await service.confirm_step(approve(request_id))
    outcome = await service.vote(approve(request_id))

    assert (prompt is not None) is needs
    assert isinstance(outcome, NotAllowed if needs else Applied)


async def test_each_vote_of_a_quorum_is_confirmed_and_audited_as_such(service, store, clock):
    request_id = await create(service, replace(PAY, action="payroll.run"))
    for identity in ("U0ALICE", "U0BOB"):
        prompt = await confirmation(service, approve(request_id, identity))
        outcome = await service.vote(approve(request_id, identity, confirm_token=prompt.token))
        assert isinstance(outcome, Applied)

    entries = [(kind, data) for kind, data in await audit(store, request_id) if kind != "created"]
    assert [(kind, data.get("confirmed")) for kind, data in entries] == [
        ("voted", True),
        ("decided", True),
    ]
    receipt = await ReceiptSigner(store, clock).sign(await service.get(request_id))
    assert receipt["receipt"]["confirmed"] is True


async def test_no_confirmation_is_offered_to_someone_who_may_not_approve(service):
    request_id = await create(service, replace(PAY, requested_by="alice"))

    assert await service.confirm_step(approve(request_id)) is None  # four-eyes
    assert await service.confirm_step(approve(request_id, "U0NOBODY")) is None
    assert await service.confirm_step(approve("no-such-request")) is None


async def test_a_receipt_without_confirm_says_nothing_of_it(service, store, clock):
    request_id = await create(service, replace(PAY, action="drill.run"))
    outcome = await service.vote(approve(request_id))
    assert isinstance(outcome, Applied)

    receipt = await ReceiptSigner(store, clock).sign(outcome.request)

    assert "confirmed" not in receipt["receipt"]


def test_a_snapshot_keeps_confirm_and_an_old_one_follows_the_risk(rules):
    for policy in rules.policies.policies:
        assert Policy.from_json(policy.to_json()).needs_confirmation is policy.needs_confirmation
    payments = rules.policies.named("payments")
    assert payments is not None
    old = payments.to_json()
    del old["confirm"]
    assert Policy.from_json(old).needs_confirmation is True
    assert Policy.from_json(old | {"risk": "high"}).needs_confirmation is False


# -- clicks ---------------------------------------------------------------------------------


async def posted(service: ApprovalService, store: SqlStore, clock: ManualClock) -> dict[str, Any]:
    dispatcher = OutboxDispatcher(store, {"slack": RecordingAdapter("slack")}, clock)
    request_id = await create(service)
    assert await dispatcher.drain() == 1
    [delivery] = await store.query(lambda reads: reads.deliveries(request_id))
    assert delivery.ref is not None
    return {"request_id": request_id, "message": delivery.ref}


def press(card: dict[str, Any], identity: str = "U0ALICE", **fields: Any) -> Click:
    return Click(
        platform="slack",
        identity=identity,
        request_id=card["request_id"],
        raw_reference=card["request_id"],
        message=card["message"],
        verdict=Verdict.APPROVE,
        **fields,
    )


async def test_approve_on_a_card_opens_a_confirmation_and_only_its_submission_decides(
    service, store, clock
):
    card = await posted(service, store, clock)

    prompt = await service.confirm_prompt(press(card))
    direct = await service.handle_click(press(card))

    assert isinstance(prompt, ConfirmPrompt)
    await assert_refused_and_pending(service, store, card["request_id"], direct)
    confirmed = await service.handle_click(press(card, confirm_token=prompt.token))
    assert isinstance(confirmed, Applied)
    assert confirmed.request.status is Status.APPROVED


async def test_no_confirmation_is_shown_for_a_click_the_core_would_refuse(service, store, clock):
    card = await posted(service, store, clock)
    elsewhere = card | {"message": {"channel": "C0OTHER", "ts": "1.1"}}

    assert await service.confirm_prompt(press(elsewhere)) is None
    assert await service.confirm_prompt(press(card, "U0NOBODY")) is None
    assert await service.confirm_prompt(replace(press(card), verdict=Verdict.DENY)) is None


async def test_a_confirmation_shown_to_one_account_does_not_confirm_anothers_click(
    service, store, clock
):
    card = await posted(service, store, clock)
    bobs = await service.confirm_prompt(press(card, "U0BOB"))
    assert isinstance(bobs, ConfirmPrompt)

    outcome = await service.handle_click(press(card, confirm_token=bobs.token))

    await assert_refused_and_pending(service, store, card["request_id"], outcome)
