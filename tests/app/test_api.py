"""The agent API: happy paths, every error path with its JSON shape, and the long-poll."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.model import Verdict, VoteCommand
from bot.limits import RateLimit
from signoff_client.canonical import payload_sha256
from tests.app.conftest import start_harness


def assert_error(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


async def test_create_then_get_returns_the_documented_shape(api):
    created = await api.create(params={"version": "1.2.3"}, requested_by="carol")
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {
        "id", "status", "action", "title", "details", "params", "payload_sha256",
        "requested_by", "policy", "level", "created_at", "deadline", "decided_at",
        "decision", "votes", "edited_params", "edited_payload_sha256",
    }  # fmt: skip
    assert (body["edited_params"], body["edited_payload_sha256"]) == (None, None)
    assert body["status"] == "pending"
    assert body["policy"] == "default"
    assert body["requested_by"] == "carol"
    fetched = await api.client.get(f"/v1/approvals/{body['id']}", headers=api.auth())
    assert fetched.json() == body


async def test_missing_or_bad_key_is_401(api):
    assert_error(await api.client.get("/v1/approvals"), 401, "unauthorized")
    bad = {"Authorization": "Bearer so_nothere_nothing"}
    assert_error(await api.client.get("/v1/approvals", headers=bad), 401, "unauthorized")
    basic = {"Authorization": "Basic abc"}
    assert_error(await api.client.get("/v1/approvals", headers=basic), 401)


async def test_revoked_key_is_401(api):
    await api.runtime.access.revoke_agent_keys("deploy-bot")
    assert_error(await api.create(), 401, "unauthorized")


async def test_a_key_revoked_elsewhere_after_it_was_used_creates_nothing(api):
    """The create path does not read a key it found live before: its own transaction
    confirms it. A revocation by another process (the CLI) must still stop the next create."""
    assert (await api.create()).status_code == 201
    elsewhere = AccessStore(api.runtime.store, SystemClock())  # as `signoff agents revoke`
    assert await elsewhere.revoke_agent_keys("deploy-bot") == 1
    assert_error(await api.create(title="after the revocation"), 401, "unauthorized")
    assert_error(await api.create(title="and again"), 401, "unauthorized")
    listed = await api.runtime.store.query(lambda reads: reads.list_requests(agent="deploy-bot"))
    assert [request.title for request in listed] == ["Deploy web"]
    body = {"action": "deploy.web", "title": "Deploy web"}
    other = await api.client.post("/v1/approvals", json=body, headers=api.auth(api.other_key))
    assert other.status_code == 201, other.text  # another agent's key is untouched


async def test_key_of_an_agent_missing_from_config_is_403(api):
    key = await api.runtime.access.create_agent_key("ghost-bot")
    response = await api.client.get("/v1/approvals", headers=api.auth(key))
    assert_error(response, 403, "agent_not_configured")


async def test_action_outside_the_agents_allow_list_is_403(api):
    assert_error(await api.create(action="payments.send"), 403, "action_not_allowed")


async def test_unknown_and_foreign_requests_are_404(api):
    assert_error(await api.client.get("/v1/approvals/nope", headers=api.auth()), 404, "not_found")
    mine = (await api.create()).json()["id"]
    foreign = await api.client.get(f"/v1/approvals/{mine}", headers=api.auth(api.other_key))
    assert_error(foreign, 404, "not_found")
    cancel = await api.client.post(f"/v1/approvals/{mine}/cancel", headers=api.auth(api.other_key))
    assert_error(cancel, 404)
    assert_error(await api.client.get("/v1/approvals/bad%20id", headers=api.auth()), 422)


async def test_idempotent_replay_and_conflict(api):
    headers = api.auth() | {"Idempotency-Key": "deploy-42"}
    body = {"action": "deploy.web", "title": "Deploy", "params": {"v": 1}}
    first = await api.client.post("/v1/approvals", json=body, headers=headers)
    again = await api.client.post("/v1/approvals", json=body, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    changed = await api.client.post(
        "/v1/approvals", json=body | {"params": {"v": 2}}, headers=headers
    )
    assert_error(changed, 409, "idempotency_conflict")
    # Another agent may use the same key for its own request.
    other = await api.client.post(
        "/v1/approvals",
        json=body,
        headers=api.auth(api.other_key) | {"Idempotency-Key": "deploy-42"},
    )
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_concurrent_replays_make_one_request(api):
    headers = api.auth() | {"Idempotency-Key": "race"}
    body = {"action": "deploy.web", "title": "Deploy"}
    responses = await asyncio.gather(
        *(api.client.post("/v1/approvals", json=body, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await api.client.get("/v1/approvals", headers=api.auth())
    assert len(listed.json()["approvals"]) == 1


async def test_cancel_and_cancel_again_is_409(api):
    request_id = (await api.create()).json()["id"]
    cancelled = await api.client.post(
        f"/v1/approvals/{request_id}/cancel", json={"reason": "not needed"}, headers=api.auth()
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["decision"]["reason"] == "not needed"
    again = await api.client.post(f"/v1/approvals/{request_id}/cancel", headers=api.auth())
    error = assert_error(again, 409, "already_decided")
    assert "already cancelled by deploy-bot" in error["message"]


async def test_huge_body_is_413(api):
    huge = {"action": "deploy.web", "title": "x", "params": {"blob": "a" * 300_000}}
    assert_error(
        await api.client.post("/v1/approvals", json=huge, headers=api.auth()), 413, "too_large"
    )


async def test_body_without_content_length_is_still_limited(api):
    async def chunks():
        for _ in range(40):
            yield b"a" * 10_000

    response = await api.client.post(
        "/v1/approvals",
        content=chunks(),
        headers=api.auth() | {"Content-Type": "application/json"},
    )
    assert_error(response, 413, "too_large")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "JSON"),
        (b'{"action": "deploy.web"}', "title"),
        (b'{"action": 5, "title": "t"}', "action"),
        (b'{"action": "deploy.web", "title": "t", "params": []}', "params"),
        (b'{"action": "deploy.web", "title": "t", "surprise": 1}', "surprise"),
        (b'{"action": "deploy.web", "title": "t", "timeout_seconds": -5}', "timeout_seconds"),
        (b'{"action": "deploy.web", "title": "t", "callback_url": "ftp://x/hook"}', "callback_url"),
        (b'{"action": "deploy web!", "title": "t"}', "action"),
        (b'{"action": "deploy.web", "title": "t", "params": {"s": "\\ud800"}}', "params"),
        (
            b'{"action": "deploy.web", "title": "t", "params": ' + b'{"a":' * 40 + b"1" + b"}" * 41,
            "params",
        ),
        (b"[]", ""),
        (b"", ""),
    ],
)
async def test_bad_bodies_are_422_with_a_message(api, body, where):
    response = await api.client.post(
        "/v1/approvals", content=body, headers=api.auth() | {"Content-Type": "application/json"}
    )
    error = assert_error(response, 422)
    assert where in error["message"]


async def test_wait_above_sixty_seconds_is_422(api):
    request_id = (await api.create()).json()["id"]
    response = await api.client.get(f"/v1/approvals/{request_id}?wait=61", headers=api.auth())
    assert_error(response, 422, "invalid_request")


async def test_per_agent_rate_limit_answers_429_with_retry_after(tmp_path):
    harness = await start_harness(tmp_path, per_agent=RateLimit(rate=0.5, burst=3))
    try:
        statuses = [(await harness.create(params={"n": n})).status_code for n in range(5)]
        assert statuses[:3] == [201, 201, 201]
        limited = await harness.create(params={"n": 5})
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        # Another agent has its own bucket.
        other = await harness.client.get("/v1/approvals", headers=harness.auth(harness.other_key))
        assert other.status_code == 200
    finally:
        await harness.client.aclose()
        await harness.runtime.stop()


async def test_max_open_answers_429(tmp_path):
    harness = await start_harness(tmp_path, max_open=2)
    try:
        assert (await harness.create(params={"n": 1})).status_code == 201
        assert (await harness.create(params={"n": 2})).status_code == 201
        limited = await harness.create(params={"n": 3})
        assert_error(limited, 429, "too_many_open_requests")
        assert limited.headers["Retry-After"] == "30"
    finally:
        await harness.client.aclose()
        await harness.runtime.stop()


async def test_long_poll_returns_within_200ms_of_the_decision(api):
    request_id = (await api.create()).json()["id"]
    poll = asyncio.create_task(
        api.client.get(f"/v1/approvals/{request_id}?wait=30", headers=api.auth())
    )
    await asyncio.sleep(0)  # let the poll park (a scheduling point, not synchronization)
    decided_at = time.monotonic()
    outcome = await api.runtime.service.vote(
        VoteCommand(request_id, "web", "alice", Verdict.APPROVE)
    )
    assert outcome.request.status.value == "approved"
    response = await asyncio.wait_for(poll, timeout=5)
    elapsed = time.monotonic() - decided_at
    assert response.json()["status"] == "approved"
    assert elapsed < 0.2


async def test_long_poll_times_out_with_the_pending_state(api):
    request_id = (await api.create()).json()["id"]
    started = time.monotonic()
    response = await api.client.get(f"/v1/approvals/{request_id}?wait=1", headers=api.auth())
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert time.monotonic() - started >= 1


async def test_list_filters_by_status_and_shows_only_own(api):
    first = (await api.create(params={"n": 1})).json()["id"]
    await api.create(params={"n": 2})
    await api.client.post(f"/v1/approvals/{first}/cancel", headers=api.auth())
    await api.client.post(
        "/v1/approvals",
        json={"action": "x", "title": "other's"},
        headers=api.auth(api.other_key),
    )
    pending = await api.client.get("/v1/approvals?status=pending", headers=api.auth())
    assert [r["status"] for r in pending.json()["approvals"]] == ["pending"]
    everything = await api.client.get("/v1/approvals", headers=api.auth())
    assert len(everything.json()["approvals"]) == 2
    assert_error(await api.client.get("/v1/approvals?status=bogus", headers=api.auth()), 422)
    assert_error(await api.client.get("/v1/approvals?limit=0", headers=api.auth()), 422)


async def test_unknown_route_and_wrong_method_are_json(api):
    assert_error(await api.client.get("/v1/nothing"), 404)
    assert_error(await api.client.delete("/v1/approvals", headers=api.auth()), 405)


async def test_health_readiness_metrics_openapi(api):
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    await api.create()
    metrics = (await api.client.get("/metrics")).text
    assert 'signoff_requests_total{status="pending"} 1.0' in metrics
    assert "signoff_outbox_depth" in metrics
    assert "signoff_decision_latency_seconds" in metrics
    spec = (await api.client.get("/openapi.json")).json()
    assert "/v1/approvals" in spec["paths"]
    assert "/v1/approvals/{request_id}/cancel" in spec["paths"]


async def test_readiness_fails_when_an_adapter_is_unhealthy(api):
    class Sick:
        platform = "sick"

        async def check_health(self):
            return False

    api.runtime.adapters["sick"] = Sick()
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["sick"] == "unhealthy"


async def test_replay_with_a_nan_body_is_422_not_500(api):
    headers = api.auth() | {"Idempotency-Key": "nan", "Content-Type": "application/json"}
    first = b'{"action": "deploy.web", "title": "t"}'
    assert (
        await api.client.post("/v1/approvals", content=first, headers=headers)
    ).status_code == 201
    replay = b'{"action": "deploy.web", "title": "t", "params": {"v": NaN}}'
    response = await api.client.post("/v1/approvals", content=replay, headers=headers)
    assert_error(response, 422)


async def test_concurrent_creates_cannot_pass_max_open(tmp_path):
    harness = await start_harness(tmp_path, max_open=3)
    try:
        responses = await asyncio.gather(*(harness.create(params={"n": n}) for n in range(15)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 3 + [429] * 12
    finally:
        await harness.client.aclose()
        await harness.runtime.stop()


async def test_an_approval_with_edits_answers_the_edited_params_and_their_hash(api):
    created = (await api.create(action="deploy.scale", params={"replicas": 10})).json()
    edited = {"replicas": 3}
    await api.runtime.service.vote(
        VoteCommand(
            created["id"],
            "web",
            "alice",
            Verdict.APPROVE,
            shown_payload_sha256=created["payload_sha256"],
            edited_params=edited,
        )
    )

    answer = (await api.client.get(f"/v1/approvals/{created['id']}", headers=api.auth())).json()
    receipt = await api.client.get(f"/v1/approvals/{created['id']}/receipt", headers=api.auth())

    assert answer["status"] == "approved"
    assert answer["params"] == {"replicas": 10}
    assert answer["payload_sha256"] == created["payload_sha256"]
    assert answer["edited_params"] == edited
    assert answer["edited_payload_sha256"] == payload_sha256("deploy.scale", edited)
    assert answer["votes"][0]["payload_sha256"] == answer["edited_payload_sha256"]
    signed = receipt.json()["receipt"]
    assert signed["payload_sha256"] == answer["edited_payload_sha256"]
    assert signed["edited"] is True
    assert signed["original_payload_sha256"] == created["payload_sha256"]


async def test_a_plain_approval_answers_null_edits(api):
    created = (await api.create(action="deploy.scale", params={"replicas": 10})).json()
    await api.runtime.service.vote(VoteCommand(created["id"], "web", "alice", Verdict.APPROVE))

    answer = (await api.client.get(f"/v1/approvals/{created['id']}", headers=api.auth())).json()
    receipt = (
        await api.client.get(f"/v1/approvals/{created['id']}/receipt", headers=api.auth())
    ).json()

    assert (answer["edited_params"], answer["edited_payload_sha256"]) == (None, None)
    assert answer["votes"][0]["payload_sha256"] == created["payload_sha256"]
    assert "edited" not in receipt["receipt"]
    assert "original_payload_sha256" not in receipt["receipt"]
