"""B16: a ``callback_url`` cannot make signoff call its own host, its network or a cloud
metadata service, unless the config allows that address.

At create time a URL whose host is such an address, in any spelling, is refused with 403
(``callback_url_not_allowed``) and nothing is created. At send time the host name is resolved by
signoff and every address checked; the connection goes to a checked address and its peer
is checked again, so DNS rebinding gets nowhere; redirects are not followed. A refused
send is dead-lettered with the reason (retrying cannot change the address).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import pytest
from aiohttp import web

from approvals.egress import EgressPolicy, EgressRefused, GuardedTransport, _GuardedBackend
from approvals.model import CreateCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.receipts import ReceiptSigner
from approvals.webhooks import WebhookSender
from tests.fakes.recording import RecordingAdapter, serve_on_loopback
from tests.reliability.app_world import app_world

REFUSED_AT_CREATE = [
    ("loopback", "http://127.0.0.1:8080/v1/approvals"),
    ("localhost", "http://localhost/hook"),
    ("a name under .localhost", "http://signoff.localhost/hook"),
    ("decimal IPv4", "http://2130706433/hook"),
    ("hex IPv4", "http://0x7f000001/hook"),
    ("short IPv4", "http://127.1/hook"),
    ("unspecified", "http://0.0.0.0:8080/hook"),
    ("cloud metadata address", "http://169.254.169.254/latest/meta-data/"),
    ("cloud metadata name", "http://metadata.google.internal/computeMetadata/v1/"),
    ("private 10/8", "http://10.0.0.5/hook"),
    ("private 172.16/12", "http://172.16.3.4/hook"),
    ("private 192.168/16", "http://192.168.1.1/hook"),
    ("carrier-grade NAT", "http://100.64.0.1/hook"),
    ("multicast", "http://224.0.0.1/hook"),
]


@pytest.mark.parametrize(
    "url", [u for _, u in REFUSED_AT_CREATE], ids=[i for i, _ in REFUSED_AT_CREATE]
)
async def test_B16_an_internal_callback_url_is_refused_at_create(tmp_path, url):
    async with app_world(tmp_path) as world:
        response = await world.create(action="deploy.web", title="t", callback_url=url)
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "callback_url_not_allowed"
        assert "webhooks.allow" in error["message"] or "names this machine" in error["message"]
        assert await world.runtime.store.query(lambda reads: reads.list_requests()) == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "fd12:3456::1",
        "fe80::1",
    ],
)
async def test_B16_a_name_that_resolves_to_an_internal_address_is_not_called(address):
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", address]  # one public address is not enough

    policy = EgressPolicy(resolve=resolve)
    assert policy.url_problem("https://hooks.example.test/x") is None  # a name: judged later
    with pytest.raises(EgressRefused, match=re.escape(str(ipaddress.ip_address(address)))):
        await policy.checked_addresses("hooks.example.test", 443)


class _Stream:
    """A connected stream as httpcore's backend returns it, reporting its peer."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "server_addr" else None


def test_B16_the_connected_peer_is_checked_again_so_rebinding_gets_nowhere():
    backend = _GuardedBackend(EgressPolicy())
    with pytest.raises(EgressRefused, match=r"reached 127\.0\.0\.1 is a loopback address"):
        backend._check_peer("hooks.example.test", _Stream(("127.0.0.1", 443)))  # type: ignore[arg-type]
    backend._check_peer("hooks.example.test", _Stream(("93.184.216.34", 443)))  # type: ignore[arg-type]


class _Receiver:
    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.status = status
        self.location = location
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=self.status, headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[_Receiver, str]]:
    hook = _Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner, base_url = await serve_on_loopback(app)
    yield hook, f"{base_url}/hook"
    await runner.cleanup()


async def _deliver_one(runtime, clock, url: str, allow: list[str]) -> OutboxDispatcher:
    sender = WebhookSender(
        runtime.access, ReceiptSigner(runtime.store, clock), clock, egress=EgressPolicy(allow)
    )
    adapters = {name: RecordingAdapter(name) for name in ("slack", "telegram", "discord")}
    dispatcher = OutboxDispatcher(runtime.store, adapters, clock, webhooks=sender)
    outcome = await runtime.service.create(
        CreateCommand(agent="deploy-bot", action="users.read", title="t", callback_url=url)
    )
    assert isinstance(outcome, Created)  # auto-approved: the webhook is queued at once
    await dispatcher.drain()
    return dispatcher


async def _webhook_rows(runtime) -> dict[str, int]:
    counts: dict[str, int] = await runtime.store.query(lambda reads: reads.outbox_counts())
    return counts


async def test_B16_a_loopback_receiver_is_not_called_unless_allowed(runtime, clock, receiver):
    hook, url = receiver
    await _deliver_one(runtime, clock, url, allow=[])
    assert hook.calls == 0
    assert (await _webhook_rows(runtime)).get("dead") == 1  # said why, and not retried

    await _deliver_one(runtime, clock, url, allow=["127.0.0.1/32"])
    assert hook.calls == 1


async def test_B16_a_redirect_to_the_metadata_service_is_not_followed(runtime, clock, receiver):
    hook, url = receiver
    hook.status, hook.location = 302, "http://169.254.169.254/latest/meta-data/"
    await _deliver_one(runtime, clock, url, allow=["127.0.0.1/32"])
    assert hook.calls == 1
    counts = await _webhook_rows(runtime)
    assert counts.get("sent", 0) == 0  # a 3xx is not a delivery; it is retried, never followed


async def test_B16_the_guarded_transport_refuses_a_unix_socket():
    backend = _GuardedBackend(EgressPolicy())
    with pytest.raises(EgressRefused):
        await backend.connect_unix_socket("/run/signoff.sock")
    await GuardedTransport(EgressPolicy()).aclose()


async def test_B16_a_name_that_never_resolves_times_out_like_a_connect():
    async def never(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()  # a resolver that never answers
        raise AssertionError("unreachable")

    backend = _GuardedBackend(EgressPolicy(resolve=never))
    with pytest.raises(httpcore.ConnectTimeout, match=r"looking up slow\.example\.test"):
        await backend.connect_tcp("slow.example.test", 443, timeout=0.05)
