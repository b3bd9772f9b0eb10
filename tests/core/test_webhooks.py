"""Callback webhooks: queued with the decision, signed, retried, delivered once."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import select

from approvals.access import AccessStore
from approvals.audit import AuditKind
from approvals.egress import EgressPolicy
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.receipts import ReceiptSigner
from approvals.tables import OUTBOX
from approvals.webhooks import WebhookSender, callback_url_problem
from tests.fakes.recording import RecordingAdapter, serve_on_loopback


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that fails the first ``failures`` posts with 500."""

    failures: int = 0
    status_when_failing: int = 500
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((dict(request.headers), body))
        if len(self.posts) <= self.failures:
            return web.Response(status=self.status_when_failing, text="not now")
        event_id = request.headers["Signoff-Event-Id"]
        if event_id not in self.accepted:
            self.accepted.append(event_id)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner, base_url = await serve_on_loopback(app)
    hook.url = f"{base_url}/hook"
    yield hook
    await runner.cleanup()


@pytest.fixture
def access(store, clock) -> AccessStore:
    return AccessStore(store, clock)


@pytest.fixture
def dispatcher(store, clock, access) -> OutboxDispatcher:
    # The receivers listen on loopback, which webhooks may reach only when allowed.
    loopback = EgressPolicy(["127.0.0.1/32"])
    sender = WebhookSender(access, ReceiptSigner(store, clock), clock, egress=loopback)
    adapters = {name: RecordingAdapter(name) for name in ("slack", "telegram", "discord")}
    return OutboxDispatcher(store, adapters, clock, webhooks=sender)


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


async def create(service, action: str, callback_url: str | None) -> str:
    outcome = await service.create(
        CreateCommand(agent="deploy-bot", action=action, title="Do it", callback_url=callback_url)
    )
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


async def webhook_rows(store):
    async with store.read() as reader:
        query = select(OUTBOX).where(OUTBOX.c.kind == "webhook").order_by(OUTBOX.c.id)
        return list((await reader.conn.execute(query)).all())


async def test_a_receiver_failing_three_times_gets_one_accepted_delivery(
    service, store, clock, access, dispatcher, receiver
):
    receiver.failures = 3
    request_id = await create(service, "deploy.web", receiver.url)
    await service.vote(VoteCommand(request_id, "slack", "U0ALICE", Verdict.APPROVE))

    for _attempt in range(6):
        await dispatcher.drain()
        clock.advance(timedelta(minutes=10))

    assert len(receiver.posts) == 4
    assert len(receiver.accepted) == 1
    event_ids = {headers["Signoff-Event-Id"] for headers, _body in receiver.posts}
    assert event_ids == set(receiver.accepted)
    secret = await access.webhook_secret("deploy-bot")
    for headers, body in receiver.posts:
        assert headers["Signoff-Signature"] == "v1=" + expected_signature(
            secret, headers["Signoff-Timestamp"], body
        )
    timestamps = [int(headers["Signoff-Timestamp"]) for headers, _body in receiver.posts]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] < timestamps[-1]
    event = json.loads(receiver.posts[-1][1])
    assert event["event_id"] == receiver.accepted[0]
    assert event["type"] == "approval.final"
    assert event["approval"]["id"] == request_id
    assert event["approval"]["status"] == "approved"
    assert event["receipt"]["receipt"]["id"] == request_id
    assert event["receipt"]["receipt"]["deciders"] == ["alice"]
    [row] = await webhook_rows(store)
    assert (row.state, row.attempts) == ("sent", 3)
    async with store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    delivered = [e for e in entries if e.kind == AuditKind.DELIVERED and e.actor == "webhook"]
    assert len(delivered) == 1
    assert json.loads(delivered[0].data)["event_id"] == receiver.accepted[0]


async def test_no_callback_url_means_no_webhook(service, store, dispatcher, receiver):
    request_id = await create(service, "deploy.web", None)
    await service.vote(VoteCommand(request_id, "slack", "U0ALICE", Verdict.DENY))
    await dispatcher.drain()
    assert await webhook_rows(store) == []
    assert receiver.posts == []


async def test_auto_decided_requests_call_back_too(service, dispatcher, receiver):
    await create(service, "logs.read", receiver.url)
    await dispatcher.drain()
    [(_headers, body)] = receiver.posts
    assert json.loads(body)["approval"]["status"] == "approved"


async def test_a_pending_request_is_not_called_back(service, store, dispatcher, receiver):
    await create(service, "deploy.web", receiver.url)
    await dispatcher.drain()
    assert receiver.posts == []
    assert await webhook_rows(store) == []


async def test_after_rotation_both_secrets_sign_for_a_day(
    service, clock, access, dispatcher, receiver
):
    old = await access.webhook_secret("deploy-bot")
    new = await access.rotate_webhook_secret("deploy-bot")
    first = await create(service, "deploy.web", receiver.url)
    await service.cancel(first, "deploy-bot")
    await dispatcher.drain()
    headers, body = receiver.posts[-1]
    timestamp = headers["Signoff-Timestamp"]
    assert headers["Signoff-Signature"] == ",".join(
        "v1=" + expected_signature(secret, timestamp, body) for secret in (new, old)
    )

    clock.advance(timedelta(hours=25))
    second = await create(service, "deploy.web", receiver.url)
    await service.cancel(second, "deploy-bot")
    await dispatcher.drain()
    headers, body = receiver.posts[-1]
    assert headers["Signoff-Signature"] == "v1=" + expected_signature(
        new, headers["Signoff-Timestamp"], body
    )


async def test_gone_stops_retrying(service, store, clock, dispatcher, receiver):
    receiver.failures = 10
    receiver.status_when_failing = 410
    request_id = await create(service, "deploy.web", receiver.url)
    await service.cancel(request_id, "deploy-bot")
    for _attempt in range(3):
        await dispatcher.drain()
        clock.advance(timedelta(minutes=10))
    assert len(receiver.posts) == 1
    [row] = await webhook_rows(store)
    assert row.state == "dead"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.test/hook", "absolute http"),
        ("/relative/hook", "absolute http"),
        ("https://user:pw@example.test/hook", "user name or password"),
        ("https://example.test/" + "x" * 2100, "at most 2048"),
    ],
)
def test_unusable_callback_urls_are_named(url, problem):
    assert problem in (callback_url_problem(url) or "")


def test_usable_callback_url():
    assert callback_url_problem("https://agent.example.test:8443/hooks/signoff?x=1") is None
