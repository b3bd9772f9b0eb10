"""Approvals with edits: an approver changes the params, and every guarantee follows the
edited payload (policy permission, four-eyes, quorum per payload, audit, receipts)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from approvals.edits import MAX_EDITED_PARAMS_BYTES
from approvals.machine import Event, Status
from approvals.model import CreateCommand, LinkUse, Verdict, VoteCommand, public_json
from approvals.outcomes import Applied, Created, NotAllowed, RefusalCode
from approvals.receipts import ReceiptSigner
from approvals.service import Rules
from approvals.store import links as link_rows
from signoff_client import ReceiptError, verify_receipt
from signoff_client.canonical import payload_sha256
from tests.world import editable_rules

ORIGINAL = {"service": "api", "replicas": 10}
EDITED = {"service": "api", "replicas": 3}


@pytest.fixture
def rules() -> Rules:
    return editable_rules()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def create(service, action: str, params=ORIGINAL, **extra):
    outcome = await service.create(
        CreateCommand(agent="deploy-bot", action=action, title="Scale", params=params, **extra)
    )
    assert isinstance(outcome, Created), outcome
    return outcome.request


def approve(request, identity, *, edited=None, shown=None, platform="web"):
    """An approval from the inbox page that showed ``shown`` (default: the current proposal)."""
    return VoteCommand(
        request.id,
        platform,
        identity,
        Verdict.APPROVE,
        shown_payload_sha256=shown or request.proposal_sha256,
        edited_params=edited,
    )


async def audit_of(store, request_id):
    async with store.read() as reader:
        return await reader.audit_entries(request_id=request_id)


async def test_single_approver_edit_approves_the_edited_params(service, store):
    request = await create(service, "scale.web")
    edited_hash = payload_sha256("scale.web", EDITED)

    outcome = await service.vote(approve(request, "alice", edited=EDITED))

    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.APPROVED
    stored = await service.get(request.id)
    assert stored.params == ORIGINAL
    assert stored.payload_sha256 == request.payload_sha256
    assert stored.edited_params == EDITED
    assert stored.edited_payload_sha256 == edited_hash
    assert [vote.payload_sha256 for vote in stored.votes] == [edited_hash]
    answer = public_json(stored)
    assert answer["edited_params"] == EDITED
    assert answer["edited_payload_sha256"] == edited_hash
    assert answer["votes"][0]["payload_sha256"] == edited_hash


@pytest.mark.parametrize(
    ("action", "edited", "code"),
    [
        ("db.migrate", {"env": "prod", "dry_run": True}, RefusalCode.EDITS_FORBIDDEN),
        ("deploy.web", {"env": "staging"}, RefusalCode.EDITS_FORBIDDEN),
        ("scale.web", ["not", "an", "object"], RefusalCode.INVALID),
        ("scale.web", {"too_big": "x" * (MAX_EDITED_PARAMS_BYTES + 1)}, RefusalCode.INVALID),
        ("scale.web", {"n": float("nan")}, RefusalCode.INVALID),
        ("scale.web", nested(40), RefusalCode.INVALID),
    ],
    ids=[
        "forbidden-quorum-policy",
        "forbidden-default",
        "not-an-object",
        "too-large",
        "not-json",
        "too-deep",
    ],
)
async def test_refused_edits_record_nothing(service, store, action, edited, code):
    params = {"env": "prod"} if action == "db.migrate" else ORIGINAL
    request = await create(service, action, params=params)

    outcome = await service.vote(approve(request, "alice", edited=edited))

    assert isinstance(outcome, NotAllowed)
    assert outcome.code is code
    stored = await service.get(request.id)
    assert stored.status is Status.PENDING
    assert stored.votes == ()
    assert stored.edited_params is None
    assert public_json(stored)["edited_params"] is None
    assert [entry.kind for entry in await audit_of(store, request.id)] == ["created", "refused"]


async def test_quorum_of_two_approves_the_edited_payload(service, store):
    request = await create(service, "rescale.web")
    edited_hash = payload_sha256("rescale.web", EDITED)

    first = await service.vote(approve(request, "alice", edited=EDITED))
    assert isinstance(first, Applied)
    assert first.event is Event.VOTE
    proposed = await service.get(request.id)
    assert proposed.proposal_sha256 == edited_hash
    # Pending: the edit is a proposal, not yet what the agent may run.
    assert public_json(proposed)["edited_params"] is None

    second = await service.vote(approve(proposed, "bob"))

    assert isinstance(second, Applied)
    assert second.request.status is Status.APPROVED
    assert second.request.approvals() == {"alice", "bob"}
    assert public_json(second.request)["edited_params"] == EDITED
    assert {vote.payload_sha256 for vote in second.request.votes} == {edited_hash}


async def test_a_vote_for_the_original_does_not_count_for_the_edit(service):
    request = await create(service, "rescale.web")
    original = await service.vote(approve(request, "alice"))
    assert isinstance(original, Applied)

    edit = await service.vote(approve(original.request, "bob", edited=EDITED))

    # alice approved 10 replicas, bob 3: nobody has two approvals yet.
    assert isinstance(edit, Applied)
    assert edit.request.status is Status.PENDING
    assert edit.request.approvals() == {"bob"}
    third = await service.vote(approve(edit.request, "dave"))
    assert third.request.status is Status.APPROVED
    assert third.request.approvals() == {"bob", "dave"}
    assert third.request.edited_params == EDITED


async def test_a_page_that_showed_the_old_proposal_is_refused_and_may_vote_again(service):
    request = await create(service, "rescale.web")
    await service.vote(approve(request, "alice", edited=EDITED))

    # dave's page was opened before alice's edit: it showed the original.
    stale = await service.vote(approve(request, "dave", shown=request.payload_sha256))

    assert isinstance(stale, NotAllowed)
    assert stale.code is RefusalCode.STALE_PROPOSAL
    assert "changed since your page showed them" in stale.message
    current = await service.get(request.id)
    assert [vote.person for vote in current.votes] == ["alice"]
    fresh = await service.vote(approve(current, "dave"))
    assert fresh.request.status is Status.APPROVED


async def test_a_chat_click_after_an_edit_is_sent_to_the_inbox(service):
    request = await create(service, "rescale.web")
    await service.vote(approve(request, "alice", edited=EDITED))

    click = await service.vote(VoteCommand(request.id, "slack", "U0BOB", Verdict.APPROVE))

    assert isinstance(click, NotAllowed)
    assert click.code is RefusalCode.STALE_PROPOSAL
    assert "inbox" in click.message
    # A deny never needs to see the latest proposal: it stops every version of it.
    deny = await service.vote(VoteCommand(request.id, "slack", "U0BOB", Verdict.DENY, "no"))
    assert deny.request.status is Status.DENIED
    assert public_json(deny.request)["edited_params"] is None


async def test_the_requester_cannot_approve_an_edit(service):
    request = await create(service, "scale.web", requested_by="alice")

    outcome = await service.vote(approve(request, "alice", edited=EDITED))

    assert isinstance(outcome, NotAllowed)
    assert outcome.code is RefusalCode.REQUESTER
    assert (await service.get(request.id)).edited_params is None


async def test_unchanged_params_are_a_plain_approval(service):
    request = await create(service, "scale.web")

    outcome = await service.vote(approve(request, "alice", edited=dict(ORIGINAL)))

    assert outcome.request.status is Status.APPROVED
    assert outcome.request.edited_params is None
    assert public_json(outcome.request)["edited_payload_sha256"] is None


async def test_audit_entries_carry_both_hashes(service, store):
    request = await create(service, "rescale.web")
    edited_hash = payload_sha256("rescale.web", EDITED)
    await service.vote(approve(request, "alice", edited=EDITED))
    await service.vote(approve(await service.get(request.id), "bob"))

    entries = [e for e in await audit_of(store, request.id) if e.kind != "created"]
    (voted_kind, voted), (decided_kind, decided) = [(e.kind, json.loads(e.data)) for e in entries]

    assert voted_kind == "voted"
    assert voted["original_payload_sha256"] == request.payload_sha256
    assert voted["edited_payload_sha256"] == edited_hash
    assert voted["edited_params"] == EDITED
    assert decided_kind == "decided"
    assert decided["payload_sha256"] == request.payload_sha256
    assert decided["edited_payload_sha256"] == edited_hash
    assert decided["approved_payload_sha256"] == edited_hash
    assert decided["deciders"] == ["alice", "bob"]
    assert (await store.verify_audit()).ok


async def test_an_edited_receipt_verifies_only_for_the_edited_params(service, store, clock):
    request = await create(service, "scale.web")
    await service.vote(approve(request, "alice", edited=EDITED))
    signer = ReceiptSigner(store, clock)

    receipt = await signer.sign(await service.get(request.id))
    keys = {key.key_id: key.public_key for key in await signer.keys()}

    signed = verify_receipt(receipt, "scale.web", EDITED, keys, now=clock.now())
    assert signed["payload_sha256"] == payload_sha256("scale.web", EDITED)
    assert signed["edited"] is True
    assert signed["original_payload_sha256"] == request.payload_sha256
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, "scale.web", ORIGINAL, keys, now=clock.now())
    assert refused.value.code == "payload_mismatch"


async def test_a_plain_receipt_has_no_edit_fields(service, store, clock):
    request = await create(service, "scale.web")
    await service.vote(approve(request, "alice"))

    receipt = await ReceiptSigner(store, clock).sign(await service.get(request.id))

    assert set(receipt["receipt"]) == {
        "id",
        "payload_sha256",
        "status",
        "deciders",
        "decided_at",
        "expires",
    }


async def test_cards_offer_the_edit_link_only_where_edits_are_allowed(service):
    editable = await create(service, "rescale.web")
    fixed = await create(service, "deploy.web")

    assert service.card_for(editable).edit_link
    assert not service.card_for(fixed).edit_link
    edited = await service.vote(approve(editable, "alice", edited=EDITED))
    line = service.card_for(edited.request).status_line
    assert "params edited by an approver, 1 of 2 approvals of the edit" in line
    approved = await service.vote(approve(edited.request, "bob"))
    card = service.card_for(approved.request)
    assert not card.edit_link
    assert card.status_line.startswith("Approved with edited params by alice, bob")


async def test_an_email_approve_link_after_an_edit_is_refused_and_stays_unspent(
    service, store, clock
):
    request = await create(service, "rescale.web")
    await service.vote(approve(request, "alice", edited=EDITED))
    link = LinkUse(nonce="n" * 32, expires_at=clock.now() + timedelta(hours=1))

    outcome = await service.vote(
        VoteCommand(request.id, "slack", "U0BOB", Verdict.APPROVE, link=link)
    )

    assert isinstance(outcome, NotAllowed)
    assert outcome.code is RefusalCode.STALE_PROPOSAL
    assert not await store.run(lambda tx: link_rows.link_is_spent(tx, link.nonce))
