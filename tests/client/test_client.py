"""``Client`` and ``AsyncClient`` against a real ``signoff serve`` process.

People decide in the web inbox while the client waits; the client must report each outcome
the way its API promises, wait across many long-polls, and ride out network trouble.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from signoff_client import (
    ApiError,
    Approval,
    AsyncClient,
    Cancelled,
    Client,
    ConfigurationError,
    Denied,
    Expired,
    NetworkError,
    RetryPolicy,
    WaitTimeout,
)
from tests.client.proxy import FlakyProxy
from tests.client.server import ServedSignoff, unique_params, unique_title
from tests.waiting import wait_until

FAST_RETRIES = RetryPolicy(delays=(0.05, 0.1, 0.2, 0.4), jitter=0)


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts the long-polls it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.long_polls = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "wait" in request.url.params:
            with self._lock:
                self.long_polls += 1
        return super().handle_request(request)


def in_background(action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in a thread (as a person acting while the agent waits)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported by join_ok
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_ok(thread: threading.Thread) -> None:
    thread.join(timeout=60)
    assert not thread.is_alive()
    errors = thread.errors  # type: ignore[attr-defined]
    if errors:
        raise errors[0]


@pytest.fixture
def client(signoff_server: ServedSignoff):
    with Client(signoff_server.base_url, signoff_server.api_key, retry=FAST_RETRIES) as made:
        yield made


# -- outcomes ---------------------------------------------------------------------------------


def test_request_then_approval_in_the_inbox_returns_the_approved_request(signoff_server, client):
    title = unique_title()
    asked = client.request(
        "deploy.web", title, params={"version": "1.4", "replicas": 3}, details="rolls out 1.4"
    )
    assert asked.status == "pending"
    assert not asked.is_final
    assert asked.params == {"version": "1.4", "replicas": 3}
    assert client.get(asked.id) == asked

    person = in_background(lambda: signoff_server.approve(asked.id, "alice", "ship it"))
    approval = client.wait_approved(asked.id)
    join_ok(person)

    assert isinstance(approval, Approval)
    assert approval.approved
    assert approval.is_final
    assert approval.decision is not None
    assert (approval.decision.by, approval.decision.platform) == ("alice", "web")
    assert approval.decision.reason == "ship it"
    assert approval.approvers == ("alice",)
    assert approval.decided_at is not None
    assert approval.payload_sha256 == asked.payload_sha256
    assert approval.raw["id"] == asked.id


def test_denial_raises_denied_with_the_reason_and_the_decider(signoff_server, client):
    asked = client.request("deploy.web", unique_title(), params={"env": "prod"})
    person = in_background(lambda: signoff_server.deny(asked.id, "bob", "not on a Friday"))
    with pytest.raises(Denied) as denied:
        client.wait_approved(asked.id)
    join_ok(person)
    assert denied.value.reason == "not on a Friday"
    assert denied.value.decided_by == "bob"
    assert denied.value.approval.status == "denied"
    assert "denied by bob: not on a Friday" in str(denied.value)


def test_two_approvers_one_approves_the_other_denies_names_the_denier(signoff_server, client):
    asked = client.request("pair.deploy", unique_title(), params=unique_params())
    signoff_server.approve(asked.id, "alice", "fine by me")
    signoff_server.deny(asked.id, "bob", "freeze until Monday")
    with pytest.raises(Denied) as denied:
        client.wait_approved(asked.id, timeout=10)
    assert denied.value.decided_by == "bob"
    assert denied.value.reason == "freeze until Monday"
    assert denied.value.approval.deciders == ("bob",)
    assert denied.value.approval.approvers == ("alice",)  # the vote stays on record


def test_two_approvals_name_both_approvers(signoff_server, client):
    asked = client.request("pair.deploy", unique_title(), params=unique_params())
    signoff_server.approve(asked.id, "alice")
    assert client.get(asked.id).deciders == ()  # one of two: nobody has decided yet
    signoff_server.approve(asked.id, "bob")
    assert client.wait_approved(asked.id, timeout=10).deciders == ("alice", "bob")


def test_a_request_nobody_answers_expires(client):
    asked = client.request("expire.soon", unique_title(), params=unique_params(), timeout_seconds=1)
    assert client.get(asked.id).deciders == ()
    with pytest.raises(Expired) as expired:
        client.wait_approved(asked.id, timeout=30)
    assert expired.value.approval.status == "expired"
    assert expired.value.approval.decision is not None
    assert expired.value.approval.decision.platform == "system"


def test_a_request_cancelled_while_waiting_raises_cancelled(signoff_server, client):
    asked = client.request("deploy.web", unique_title(), params=unique_params())

    def cancel_elsewhere() -> None:
        with Client(signoff_server.base_url, signoff_server.api_key) as other:
            other.cancel(asked.id, reason="superseded by 1.5")

    canceller = in_background(cancel_elsewhere)
    with pytest.raises(Cancelled) as cancelled:
        client.wait_approved(asked.id)
    join_ok(canceller)
    assert cancelled.value.reason == "superseded by 1.5"


def test_cancel_returns_the_cancelled_request_and_is_safe_to_repeat(client):
    asked = client.request("deploy.web", unique_title(), params=unique_params())
    cancelled = client.cancel(asked.id, reason="changed my mind")
    assert cancelled.status == "cancelled"
    assert cancelled.decision is not None
    assert cancelled.decision.reason == "changed my mind"
    assert client.cancel(asked.id).status == "cancelled"


def test_cancelling_a_decided_request_says_already_decided(signoff_server, client):
    asked = client.request("deploy.web", unique_title(), params=unique_params())
    signoff_server.approve(asked.id)
    with pytest.raises(ApiError) as refused:
        client.cancel(asked.id)
    assert (refused.value.status, refused.value.code) == (409, "already_decided")


def test_the_same_idempotency_key_returns_the_same_request(client):
    title = unique_title()
    params = unique_params()
    key = "deploy-42-" + title[-12:]
    first = client.request("deploy.web", title, params=params, idempotency_key=key)
    again = client.request("deploy.web", title, params=params, idempotency_key=key)
    assert first.id == again.id


def test_api_errors_carry_the_servers_code_and_message(client):
    with pytest.raises(ApiError) as missing:
        client.get("no-such-request")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as invalid:
        client.request("not an action", "t")
    assert invalid.value.status == 422


def test_an_unknown_key_is_an_api_error_not_retried(signoff_server):
    with (
        Client(signoff_server.base_url, "so_x_y", retry=FAST_RETRIES) as stranger,
        pytest.raises(ApiError) as refused,
    ):
        stranger.get("anything")
    assert refused.value.status == 401


def test_settings_come_from_the_environment(signoff_server, monkeypatch):
    monkeypatch.setenv("SIGNOFF_URL", signoff_server.base_url)
    monkeypatch.setenv("SIGNOFF_API_KEY", signoff_server.api_key)
    with Client() as from_env:
        assert (
            from_env.request("deploy.web", unique_title(), params=unique_params()).status
            == "pending"
        )
    monkeypatch.delenv("SIGNOFF_API_KEY")
    with pytest.raises(ConfigurationError, match="SIGNOFF_API_KEY is not set"):
        Client()
    with pytest.raises(ConfigurationError, match="http"):
        Client("ftp://127.0.0.1", "so_x")


# -- long waits -------------------------------------------------------------------------------


def test_a_long_wait_is_made_of_several_long_polls(signoff_server):
    counting = CountingTransport()
    with Client(
        signoff_server.base_url, signoff_server.api_key, long_poll_seconds=1, transport=counting
    ) as patient:
        asked = patient.request("deploy.web", unique_title(), params=unique_params())

        def decide_after_three_polls() -> None:
            wait_until(lambda: counting.long_polls >= 3)
            signoff_server.approve(asked.id)

        person = in_background(decide_after_three_polls)
        started = time.monotonic()
        approval = patient.wait(asked.id)
        waited = time.monotonic() - started
        join_ok(person)
    assert approval.status == "approved"
    assert counting.long_polls >= 3
    assert waited >= 2.0  # three one-second holds, the last answered by the decision


def test_wait_returns_the_pending_request_when_the_callers_deadline_passes(signoff_server):
    counting = CountingTransport()
    with Client(
        signoff_server.base_url, signoff_server.api_key, long_poll_seconds=1, transport=counting
    ) as patient:
        asked = patient.request("deploy.web", unique_title(), params=unique_params())
        started = time.monotonic()
        still = patient.wait(asked.id, timeout=2.5)
        waited = time.monotonic() - started
        assert still.status == "pending"
        assert 2.5 <= waited < 6
        assert counting.long_polls >= 2  # 1 s, 1 s, then a look at the deadline
        with pytest.raises(WaitTimeout) as gave_up:
            patient.wait_approved(asked.id, timeout=1)
        assert gave_up.value.approval.id == asked.id
        assert patient.get(asked.id).status == "pending"  # waiting less never cancels


def test_long_poll_slices_must_fit_the_servers_limit(signoff_server):
    for seconds in (0, 61):
        with pytest.raises(ValueError, match="long_poll_seconds"):
            Client(signoff_server.base_url, "so_x", long_poll_seconds=seconds)


# -- network trouble --------------------------------------------------------------------------


def server_port(served: ServedSignoff) -> int:
    return int(served.base_url.rsplit(":", 1)[1])


def test_dropped_connections_and_a_busy_answer_are_retried(signoff_server):
    proxy = FlakyProxy(server_port(signoff_server), ["drop", "503", "drop"])
    retries: list[str] = []
    try:
        with Client(
            proxy.url,
            signoff_server.api_key,
            retry=FAST_RETRIES,
            on_retry=lambda error, delay: retries.append(type(error).__name__),
        ) as flaky:
            asked = flaky.request("deploy.web", unique_title(), params=unique_params())
            assert flaky.get(asked.id).status == "pending"
    finally:
        proxy.close()
    assert proxy.faults == ["drop", "503", "drop"]
    assert retries == ["NetworkError", "ApiError", "NetworkError"]


def test_a_create_whose_answer_was_lost_is_retried_without_making_a_second_request(
    signoff_server,
):
    proxy = FlakyProxy(server_port(signoff_server), ["swallow"])
    title = unique_title()
    try:
        with Client(proxy.url, signoff_server.api_key, retry=FAST_RETRIES) as flaky:
            asked = flaky.request("deploy.web", title, params=unique_params())
    finally:
        proxy.close()
    assert proxy.faults == ["swallow"]
    made = signoff_server.requests_titled(title)
    assert [request["id"] for request in made] == [asked.id]


def test_network_trouble_during_a_wait_is_retried(signoff_server, client):
    asked = client.request("deploy.web", unique_title(), params=unique_params())
    proxy = FlakyProxy(server_port(signoff_server), ["drop", "drop"])
    try:
        with Client(
            proxy.url, signoff_server.api_key, long_poll_seconds=1, retry=FAST_RETRIES
        ) as flaky:
            person = in_background(lambda: signoff_server.approve(asked.id))
            assert flaky.wait_approved(asked.id).status == "approved"
            join_ok(person)
    finally:
        proxy.close()
    assert proxy.faults == ["drop", "drop"]


def test_retries_are_bounded_and_then_the_error_is_raised(signoff_server):
    proxy = FlakyProxy(server_port(signoff_server), ["drop"] * 10)
    try:
        with (
            Client(proxy.url, signoff_server.api_key, retry=FAST_RETRIES) as flaky,
            pytest.raises(NetworkError, match="cannot reach signoff"),
        ):
            flaky.get("anything")
    finally:
        proxy.close()
    assert proxy.faults == ["drop"] * 5  # the first attempt and four retries


def test_a_wait_keeps_its_timeout_through_an_outage_and_names_the_request(signoff_server):
    proxy = FlakyProxy(server_port(signoff_server))
    counting = CountingTransport()
    try:
        # The default retries would take about 30 s: the wait must stop at its own bound.
        with Client(proxy.url, signoff_server.api_key, transport=counting) as agent:
            asked = agent.request("deploy.web", unique_title(), params=unique_params())

            def cut_once_waiting() -> None:
                wait_until(lambda: counting.long_polls >= 1)
                proxy.cut()

            outage = in_background(cut_once_waiting)
            started = time.monotonic()
            with pytest.raises(NetworkError) as unreachable:
                agent.wait(asked.id, timeout=4)
            waited = time.monotonic() - started
            join_ok(outage)
    finally:
        proxy.close()
    assert waited < 4 + 1
    assert unreachable.value.request_id == asked.id
    assert unreachable.value.retryable
    assert f"cannot reach signoff at {proxy.url}" in str(unreachable.value)
    assert f"while waiting for request {asked.id}" in str(unreachable.value)
    assert signoff_server.requests_titled(asked.title)[0]["status"] == "pending"


async def test_an_async_wait_keeps_its_timeout_through_an_outage(signoff_server):
    proxy = FlakyProxy(server_port(signoff_server))
    try:
        async with AsyncClient(proxy.url, signoff_server.api_key) as agent:
            asked = await agent.request("deploy.web", unique_title(), params=unique_params())
            proxy.cut()
            started = time.monotonic()
            with pytest.raises(NetworkError) as unreachable:
                await agent.wait_approved(asked.id, timeout=3)
            waited = time.monotonic() - started
    finally:
        proxy.close()
    assert waited < 3 + 1
    assert unreachable.value.request_id == asked.id


def test_errors_outside_a_wait_name_no_request(client):
    with pytest.raises(ApiError) as missing:
        client.get("no-such-request")
    assert missing.value.request_id is None
    with pytest.raises(ApiError) as waited:
        client.wait("no-such-request", timeout=1)
    assert waited.value.request_id == "no-such-request"
    assert waited.value.code == "not_found"


# -- the async client -------------------------------------------------------------------------


async def test_async_client_approve_deny_and_long_polls(signoff_server):
    async with AsyncClient(
        signoff_server.base_url, signoff_server.api_key, long_poll_seconds=1
    ) as agent:
        asked = await agent.request("deploy.web", unique_title(), params={"n": 1})
        assert (await agent.get(asked.id)).status == "pending"
        still = await agent.wait(asked.id, timeout=1.5)
        assert still.status == "pending"

        deciding = asyncio.create_task(asyncio.to_thread(signoff_server.approve, asked.id))
        approval = await agent.wait_approved(asked.id)
        await deciding
        assert approval.decision is not None
        assert approval.decision.by == "alice"

        denied_one = await agent.request("deploy.web", unique_title(), params=unique_params())
        deciding = asyncio.create_task(
            asyncio.to_thread(signoff_server.deny, denied_one.id, "bob", "no")
        )
        with pytest.raises(Denied, match="denied by bob: no"):
            await agent.wait_approved(denied_one.id)
        await deciding

        cancelled = await agent.cancel(
            (await agent.request("deploy.web", unique_title(), params=unique_params())).id
        )
        assert cancelled.status == "cancelled"
        listed = await agent.list_approvals(status="cancelled")
        assert cancelled.id in [item.id for item in listed]


async def test_async_client_retries_network_trouble(signoff_server):
    proxy = FlakyProxy(server_port(signoff_server), ["drop", "503"])
    try:
        async with AsyncClient(proxy.url, signoff_server.api_key, retry=FAST_RETRIES) as flaky:
            asked = await flaky.request("deploy.web", unique_title(), params=unique_params())
            assert asked.status == "pending"
    finally:
        proxy.close()
    assert proxy.faults == ["drop", "503"]
