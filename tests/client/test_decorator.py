"""``require_approval`` against a real server: the body runs only for an approved, verified
call with exactly the arguments that were approved."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from signoff_client import (
    AsyncClient,
    Cancelled,
    Client,
    Denied,
    Expired,
    ReceiptError,
    WaitTimeout,
    decorator,
    require_approval,
)
from tests.client.server import ServedSignoff, unique_title


class Outcome:
    """A decorated call made in a thread, as an agent blocked on approval."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except BaseException as exc:
            self.error = exc

    def result(self) -> Any:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the decorated call did not return"
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def client(signoff_server: ServedSignoff):
    with Client(signoff_server.base_url, signoff_server.api_key) as made:
        yield made


def test_an_approved_call_runs_with_its_arguments(signoff_server, client):
    title = unique_title("decorated")
    ran: list[tuple[str, int]] = []

    @require_approval(action="deploy.web", title=title, client=client)
    def deploy(service: str, replicas: int = 3) -> str:
        ran.append((service, replicas))
        return f"deployed {service}"

    call = Outcome(lambda: deploy("web"))
    asked = signoff_server.pending_titled(title)
    assert asked["params"] == {"service": "web", "replicas": 3}  # defaults are part of it
    assert ran == []
    signoff_server.approve(asked["id"])
    assert call.result() == "deployed web"
    assert ran == [("web", 3)]


def test_a_denied_call_never_runs(signoff_server, client):
    title = unique_title("decorated")
    ran = []

    @require_approval(action="db.drop_table", title=title, client=client)
    def drop_table(table: str) -> None:
        ran.append(table)

    call = Outcome(lambda: drop_table("users"))
    signoff_server.deny(signoff_server.pending_titled(title)["id"], "bob", "not users")
    with pytest.raises(Denied, match="not users"):
        call.result()
    assert ran == []


def test_an_expired_call_never_runs(client):
    ran = []

    @require_approval(
        action="expire.soon", title=unique_title("decorated"), client=client, timeout=1
    )
    def clean_up() -> None:
        ran.append(True)

    with pytest.raises(Expired):
        clean_up()
    assert ran == []


def test_a_call_that_outlives_its_timeout_cancels_the_request_and_never_runs(
    signoff_server, client, monkeypatch
):
    # The policy gives approvers at least an hour, longer than the caller's timeout.
    monkeypatch.setattr(decorator, "WAIT_GRACE_SECONDS", 0.5)
    title = unique_title("decorated")
    ran = []

    @require_approval(action="slow.review", title=title, client=client, timeout=1)
    def publish() -> None:
        ran.append(True)

    with pytest.raises(WaitTimeout) as gave_up:
        publish()
    assert ran == []
    assert client.get(gave_up.value.approval.id).status == "cancelled"


def test_a_call_cancelled_while_waiting_never_runs(signoff_server, client):
    title = unique_title("decorated")
    ran = []

    @require_approval(action="deploy.web", title=title, client=client)
    def deploy(ticket: str) -> None:
        ran.append(True)

    call = Outcome(lambda: deploy(title))
    asked = signoff_server.pending_titled(title)
    with Client(signoff_server.base_url, signoff_server.api_key) as other:
        other.cancel(asked["id"], reason="superseded")
    with pytest.raises(Cancelled, match="superseded"):
        call.result()
    assert ran == []


def test_an_argument_changed_during_the_wait_stops_the_call(signoff_server, client):
    title = unique_title("decorated")
    ran = []

    @require_approval(action="db.delete_rows", title=title, client=client)
    def delete_rows(table: str, ids: list[int]) -> None:
        ran.append(list(ids))

    ids = [1, 2]
    call = Outcome(lambda: delete_rows("orders", ids))
    asked = signoff_server.pending_titled(title)
    assert asked["params"] == {"table": "orders", "ids": [1, 2]}
    ids.append(3)  # tampering after asking, before running
    signoff_server.approve(asked["id"])
    with pytest.raises(ReceiptError) as refused:
        call.result()
    assert refused.value.code == "payload_mismatch"
    assert ran == []


def test_params_from_that_answers_differently_the_second_time_stops_the_call(
    signoff_server, client
):
    title = unique_title("decorated")
    answers = iter([{"amount": 10}, {"amount": 10_000}])
    ran = []

    @require_approval(
        action="pay.invoice",
        title=title,
        client=client,
        params_from=lambda invoice: next(answers),
    )
    def pay(invoice: object) -> None:
        ran.append(invoice)

    call = Outcome(lambda: pay(object()))
    asked = signoff_server.pending_titled(title)
    assert asked["params"] == {"amount": 10}
    signoff_server.approve(asked["id"])
    with pytest.raises(ReceiptError, match="not this action with these params"):
        call.result()
    assert ran == []


def test_params_from_chooses_what_is_approved(signoff_server, client):
    title = unique_title("decorated")
    ran = []

    class Invoice:
        def __init__(self, number: str, amount: int) -> None:
            self.number, self.amount = number, amount

    @require_approval(
        action="pay.invoice",
        title=lambda params: f"{title}: pay {params['number']}",
        client=client,
        params_from=lambda invoice: {"number": invoice.number, "amount": invoice.amount},
    )
    def pay(invoice: Invoice) -> str:
        ran.append(invoice.number)
        return "paid"

    call = Outcome(lambda: pay(Invoice("INV-7", 120)))
    asked = signoff_server.pending_titled(f"{title}: pay INV-7")
    assert asked["params"] == {"number": "INV-7", "amount": 120}
    signoff_server.approve(asked["id"])
    assert call.result() == "paid"
    assert ran == ["INV-7"]


def test_a_non_json_argument_is_refused_before_anything_is_asked(signoff_server, client):
    title = unique_title("decorated")

    @require_approval(action="deploy.web", title=title, client=client)
    def deploy(when: object) -> None:
        raise AssertionError("must not run")

    with pytest.raises(TypeError, match=r"argument 'when' \(object\)"):
        deploy(object())
    assert signoff_server.requests_titled(title) == []


def test_a_methods_self_is_not_part_of_the_params(signoff_server, client):
    title = unique_title("decorated")

    class Deployer:
        @require_approval(action="deploy.web", title=title, client=client)
        def deploy(self, version: str) -> str:
            return f"{type(self).__name__} deployed {version}"

    call = Outcome(lambda: Deployer().deploy("2.0"))
    asked = signoff_server.pending_titled(title)
    assert asked["params"] == {"version": "2.0"}
    signoff_server.approve(asked["id"])
    assert call.result() == "Deployer deployed 2.0"


def test_the_wrong_kind_of_client_is_a_clear_error(signoff_server, client):
    with pytest.raises(TypeError, match="is async: give it an AsyncClient"):

        @require_approval(action="a.b", title="t", client=client)
        async def async_function() -> None: ...


async def test_an_async_function_runs_only_once_approved(signoff_server):
    title = unique_title("decorated")
    ran = []
    async with AsyncClient(signoff_server.base_url, signoff_server.api_key) as agent:

        @require_approval(action="deploy.web", title=title, client=agent)
        async def deploy(version: str) -> str:
            ran.append(version)
            return "done"

        call = asyncio.create_task(deploy("3.1"))
        asked = await asyncio.to_thread(signoff_server.pending_titled, title)
        assert ran == []
        await asyncio.to_thread(signoff_server.approve, asked["id"])
        assert await call == "done"
        assert ran == ["3.1"]

        denied_title = unique_title("decorated")

        @require_approval(action="deploy.web", title=denied_title, client=agent)
        async def rollback(ticket: str) -> None:
            ran.append("rollback")

        rolling_back = asyncio.create_task(rollback(denied_title))
        asked = await asyncio.to_thread(signoff_server.pending_titled, denied_title)
        await asyncio.to_thread(signoff_server.deny, asked["id"], "bob")
        with pytest.raises(Denied):
            await rolling_back
    assert ran == ["3.1"]


async def test_cancelling_the_waiting_task_cancels_the_request(signoff_server):
    title = unique_title("decorated")
    async with AsyncClient(signoff_server.base_url, signoff_server.api_key) as agent:

        @require_approval(action="deploy.web", title=title, client=agent)
        async def deploy(ticket: str) -> None:
            raise AssertionError("must not run")

        call = asyncio.create_task(deploy(title))
        asked = await asyncio.to_thread(signoff_server.pending_titled, title)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await agent.get(asked["id"])).status == "cancelled"
