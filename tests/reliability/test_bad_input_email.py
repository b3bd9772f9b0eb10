"""B19 at the email edge: link scanners, previews and forged or reused decision links.

Each entry of ``corpus/email_links.yaml`` starts from a mail that really arrived at the
fake SMTP relay (real aiosmtplib, STARTTLS and AUTH), takes its links, and sends them to
the web inbox's confirm page the way a scanner, a preview or a forger would. GET and HEAD
never decide; a tampered link, a link for another request, verdict or person, an expired
link, and a cross-site POST are refused; a link counts once. The request is judged by a
quorum of two, so a counted vote leaves it pending and a second use of the same link is
visible as a refusal rather than hidden behind a decided request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from approvals.clock import ManualClock
from approvals.links import read_link
from approvals.machine import Status
from approvals.model import Verdict
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.email.conftest import address, confirm_client, email_adapter, links_in
from tests.adapters.email.test_delivery import create, email_rules
from tests.fakes.smtp import FakeSmtpRelay
from tests.reliability.corpus import cases
from tests.world import build_test_runtime

CORPUS = "email_links.yaml"
ALICE = address("alice")
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@dataclass
class LinkWorld:
    runtime: Runtime
    relay: FakeSmtpRelay
    client: httpx.AsyncClient
    request_id: str
    other_request_id: str

    def links(self, request_id: str | None = None) -> dict[Verdict, str]:
        wanted = request_id or self.request_id
        mails = [m for m in self.relay.to(ALICE) if str(m["Message-ID"]).startswith(f"<{wanted}.")]
        return links_in(mails[0])

    async def request(self) -> Any:
        found = await self.runtime.service.get(self.request_id)
        assert found is not None
        return found

    async def spent(self, path: str) -> bool:
        claim = await self.runtime.service.links.read(path.rsplit("/", 1)[1])
        assert claim is not None
        return await self.runtime.service.links.spent(claim.nonce)

    async def assert_untouched(self) -> None:
        request = await self.request()
        assert (request.status, list(request.votes)) == (Status.PENDING, [])
        for path in self.links().values():
            assert not await self.spent(path)


@pytest.fixture
async def world(store: SqlStore, clock: ManualClock, tmp_path: Any) -> AsyncIterator[LinkWorld]:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    runtime = build_test_runtime(store, clock, email_rules(quorum=2))
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    request_id = await create(runtime)
    other = await create(runtime, title="Another request", params={"table": "customers"})
    assert other != request_id
    await runtime.dispatcher.drain()
    client = await confirm_client(runtime)
    try:
        yield LinkWorld(runtime, relay, client, request_id, other)
    finally:
        await client.aclose()
        await relay.stop()


@pytest.mark.parametrize("entry", cases(CORPUS, "prefetch"))
async def test_fetching_a_link_decides_nothing(world: LinkWorld, entry: dict[str, Any]) -> None:
    headers = {"User-Agent": entry["user_agent"]} if "user_agent" in entry else {}
    paths = (
        list(world.links().values()) if entry.get("all_links") else [world.links()[Verdict.APPROVE]]
    )
    for path in paths:
        for _ in range(entry.get("times", 1)):
            answer = await world.client.request(entry["method"], path, headers=headers)
            assert answer.status_code == 200
            if entry["method"] == "GET":
                assert "decided nothing" in answer.text
    await world.assert_untouched()


def _retoken(path: str, change: Any) -> str:
    """``path`` with its token's payload changed by ``change`` (the signature kept)."""
    prefix, token = path.rsplit("/", 1)
    payload_text, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_text + "=" * (-len(payload_text) % 4)))
    change(payload)
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return f"{prefix}/{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


async def _forged_path(world: LinkWorld, tamper: str) -> tuple[str, dict[str, str]]:
    path = world.links()[Verdict.APPROVE]
    prefix, token = path.rsplit("/", 1)
    payload, signature = token.split(".")
    if tamper == "identity":
        return _retoken(path, lambda body: body.update(i=address("bob"))), SAME_SITE
    if tamper == "request_in_path":
        return path.replace(world.request_id, world.other_request_id), SAME_SITE
    if tamper == "other_requests_link":
        other = world.links(world.other_request_id)[Verdict.APPROVE]
        return other.replace(world.other_request_id, world.request_id, 1), SAME_SITE
    if tamper == "verdict_in_path":
        return path.replace("/approve/", "/deny/"), SAME_SITE
    if tamper == "payload_byte":
        changed = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:]
        return f"{prefix}/{changed}.{signature}", SAME_SITE
    if tamper == "signature_truncated":
        return f"{prefix}/{payload}.{signature[:-2]}", SAME_SITE
    if tamper == "no_signature":
        return f"{prefix}/{payload}", SAME_SITE
    if tamper == "garbage":
        return f"{prefix}/%%%.###", SAME_SITE
    if tamper == "too_long":
        return f"{prefix}/{payload * 20}.{signature}", SAME_SITE
    if tamper == "expired":
        links = world.runtime.service.links
        token = await links.issue(
            platform="email",
            identity=ALICE,
            request_id=world.request_id,
            verdict=Verdict.APPROVE,
            expires_at=links.now() - timedelta(seconds=1),
        )
        return f"{prefix}/{token}", SAME_SITE
    if tamper == "stranger":
        links = world.runtime.service.links
        token = await links.issue(
            platform="email",
            identity=address("mallory"),
            request_id=world.request_id,
            verdict=Verdict.APPROVE,
            expires_at=links.now() + timedelta(minutes=5),
        )
        return f"{prefix}/{token}", SAME_SITE
    if tamper == "cross_site":
        return path, {"Sec-Fetch-Site": "cross-site"}
    raise AssertionError(f"unknown tamper {tamper}")  # pragma: no cover


@pytest.mark.parametrize("entry", cases(CORPUS, "forged"))
async def test_a_forged_or_foreign_link_counts_nothing(
    world: LinkWorld, entry: dict[str, Any]
) -> None:
    path, headers = await _forged_path(world, entry["tamper"])
    answer = await world.client.post(path, data={"confirm": "1"}, headers=headers)
    if entry["expect"] == "refused":
        assert answer.status_code in (403, 404), answer.text
    else:
        assert answer.status_code in (403, 422), answer.text
        assert "not counted" in answer.text
    await world.assert_untouched()
    if entry["tamper"] == "cross_site":
        # The same link from the page itself still works: the refusal was the site's.
        good = await world.client.post(path, data={"confirm": "1"}, headers=SAME_SITE)
        assert good.status_code == 200


@pytest.mark.parametrize("entry", cases(CORPUS, "reuse"))
async def test_a_link_counts_once(world: LinkWorld, entry: dict[str, Any]) -> None:
    path = world.links()[Verdict.APPROVE]
    first = await world.client.post(path, data={"confirm": "1"}, headers=SAME_SITE)
    assert first.status_code == 200
    assert "approval was counted" in first.text
    assert await world.spent(path)
    again = await world.client.post(path, data={"confirm": "1"}, headers=SAME_SITE)
    assert again.status_code in (403, 422)
    assert "not counted" in again.text
    page = await world.client.get(path)
    assert "already been used" in page.text
    assert 'class="approve"' not in page.text
    request = await world.request()
    assert request.status is Status.PENDING
    assert [vote.person for vote in request.votes] == ["alice"]
    assert read_link(b"another key", path.rsplit("/", 1)[1]) is None
