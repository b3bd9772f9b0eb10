"""Signed receipts: what they cover, who signs them, and how keys rotate."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Applied, Created
from approvals.receipts import (
    RECEIPT_TTL,
    ReceiptKey,
    ReceiptNotFinal,
    ReceiptSigner,
    b64url_decode,
)
from signoff_client.canonical import canonical_json, payload_sha256


async def create(service, command: CreateCommand):
    outcome = await service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome.request


def verifies(signed: dict[str, Any], keys: list[ReceiptKey]) -> bool:
    by_id = {key.key_id: key for key in keys}
    key = by_id.get(signed["key_id"])
    if key is None:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(
            b64url_decode(signed["signature"]), canonical_json(signed["receipt"])
        )
    except InvalidSignature:
        return False
    return True


async def test_an_approval_receipt_names_its_payload_and_deciders(service, store, clock):
    request = await create(
        service,
        CreateCommand(
            agent="deploy-bot", action="db.migrate", title="Migrate", params={"env": "prod"}
        ),
    )
    for identity in ("U0BOB", "U0ALICE"):
        outcome = await service.vote(VoteCommand(request.id, "slack", identity, Verdict.APPROVE))
        assert isinstance(outcome, Applied)
    decided = await service.get(request.id)
    signer = ReceiptSigner(store, clock)

    signed = await signer.sign(decided)

    assert signed["alg"] == "Ed25519"
    assert signed["receipt"] == {
        "id": request.id,
        "payload_sha256": payload_sha256("db.migrate", {"env": "prod"}),
        "status": "approved",
        "deciders": ["alice", "bob"],
        "decided_at": decided.decided_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": (decided.decided_at + RECEIPT_TTL).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert verifies(signed, await signer.keys())
    tampered = signed | {"receipt": signed["receipt"] | {"payload_sha256": "0" * 64}}
    assert not verifies(tampered, await signer.keys())


async def test_a_pending_request_has_no_receipt(service, store, clock):
    request = await create(
        service, CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy")
    )
    with pytest.raises(ReceiptNotFinal):
        await ReceiptSigner(store, clock).sign(request)


async def test_timeouts_and_denials_get_receipts_with_their_status(service, store, clock):
    expiring = await create(
        service, CreateCommand(agent="deploy-bot", action="cache.flush", title="Flush")
    )
    denied = await create(
        service, CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy")
    )
    await service.vote(VoteCommand(denied.id, "slack", "U0BOB", Verdict.DENY))
    clock.advance(timedelta(minutes=11))
    await service.process_due()
    signer = ReceiptSigner(store, clock)

    expired = await signer.sign(await service.get(expiring.id))
    refused = await signer.sign(await service.get(denied.id))

    assert (expired["receipt"]["status"], expired["receipt"]["deciders"]) == ("expired", [])
    assert (refused["receipt"]["status"], refused["receipt"]["deciders"]) == ("denied", ["bob"])


async def test_rotation_signs_with_the_new_key_and_old_receipts_keep_verifying(
    service, store, clock
):
    request = await create(
        service, CreateCommand(agent="deploy-bot", action="docs.publish", title="Publish")
    )
    await service.cancel(request.id, "deploy-bot")
    signer = ReceiptSigner(store, clock)
    before = await signer.sign(await service.get(request.id))

    clock.advance(timedelta(seconds=1))
    new_key = await signer.rotate()
    after = await signer.sign(await service.get(request.id))
    keys = await signer.keys()

    assert after["key_id"] == new_key.key_id != before["key_id"]
    assert [key.key_id for key in keys] == [new_key.key_id, before["key_id"]]
    assert [key.active for key in keys] == [True, False]
    assert verifies(before, keys)
    assert verifies(after, keys)

    assert await signer.remove(before["key_id"])
    assert not verifies(before, await signer.keys())
    assert not await signer.remove(before["key_id"])


async def test_processes_starting_together_make_one_first_key(store, clock):
    signers = [ReceiptSigner(store, clock) for _ in range(4)]
    listings = await asyncio.gather(*(signer.keys() for signer in signers))
    assert {len(keys) for keys in listings} == {1}
    assert len({keys[0].key_id for keys in listings}) == 1
