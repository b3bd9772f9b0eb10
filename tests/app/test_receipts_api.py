"""The agent API's receipts, receipt keys and callback_url field."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from approvals.model import Verdict, VoteCommand
from approvals.receipts import b64url_decode
from signoff_client.canonical import canonical_json, payload_sha256


async def test_receipt_of_a_decided_request_verifies_with_a_published_key(api):
    created = (await api.create(params={"version": "1.2.3"})).json()
    await api.runtime.service.vote(VoteCommand(created["id"], "web", "alice", Verdict.APPROVE))

    response = await api.client.get(f"/v1/approvals/{created['id']}/receipt", headers=api.auth())
    keys = await api.client.get("/v1/receipt-keys", headers=api.auth())

    assert response.status_code == 200, response.text
    signed = response.json()
    assert signed["receipt"]["id"] == created["id"]
    assert signed["receipt"]["status"] == "approved"
    assert signed["receipt"]["deciders"] == ["alice"]
    assert signed["receipt"]["payload_sha256"] == payload_sha256("deploy.web", {"version": "1.2.3"})
    [key] = keys.json()["keys"]
    assert (key["key_id"], key["alg"], key["active"]) == (signed["key_id"], "Ed25519", True)
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(key["public_key"]))
    public.verify(b64url_decode(signed["signature"]), canonical_json(signed["receipt"]))


async def test_a_pending_request_has_no_receipt_yet(api):
    created = (await api.create()).json()
    response = await api.client.get(f"/v1/approvals/{created['id']}/receipt", headers=api.auth())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_final"


async def test_another_agents_receipt_is_not_found(api):
    created = (await api.create()).json()
    await api.runtime.service.cancel(created["id"], "deploy-bot")
    response = await api.client.get(
        f"/v1/approvals/{created['id']}/receipt", headers=api.auth(api.other_key)
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_receipt_keys_need_an_agent_key(api):
    response = await api.client.get("/v1/receipt-keys")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_callback_url_is_stored_and_validated(api):
    accepted = await api.create(callback_url="https://agent.example.test/hooks/signoff")
    refused = await api.create(callback_url="file:///etc/passwd")

    assert accepted.status_code == 201, accepted.text
    stored = await api.runtime.service.get(accepted.json()["id"])
    assert stored.callback_url == "https://agent.example.test/hooks/signoff"
    assert refused.status_code == 422
    assert "callback_url" in refused.json()["error"]["message"]


async def test_an_idempotent_replay_with_another_callback_url_conflicts(api):
    headers = api.auth() | {"Idempotency-Key": "deploy-42"}
    body = {"action": "deploy.web", "title": "Deploy", "callback_url": "https://a.test/hook"}
    first = await api.client.post("/v1/approvals", json=body, headers=headers)
    replay = await api.client.post(
        "/v1/approvals", json=body | {"callback_url": "https://b.test/hook"}, headers=headers
    )
    assert first.status_code == 201
    assert replay.status_code == 409
