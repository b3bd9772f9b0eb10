"""``require_approval`` when the approvers edited the params, against a real server: the
function runs with the edited arguments after the receipt was checked against them, and
an edit that does not fit the function runs nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signoff_client import AsyncClient, Client, EditedParamsError, require_approval
from tests.client.server import ServedSignoff, unique_title
from tests.client.test_decorator import Outcome


@pytest.fixture
def client(signoff_server: ServedSignoff):
    with Client(signoff_server.base_url, signoff_server.api_key) as made:
        yield made


def test_an_edited_approval_runs_with_the_edited_arguments(signoff_server, client):
    title = unique_title("edited")
    ran: list[tuple[str, int, dict[str, Any]]] = []

    @require_approval(action="edit.scale", title=title, client=client)
    def scale(service: str, replicas: int = 10, **labels: Any) -> str:
        ran.append((service, replicas, labels))
        return f"scaled {service} to {replicas}"

    call = Outcome(lambda: scale("api", team="core"))
    asked = signoff_server.pending_titled(title)
    assert asked["params"] == {"service": "api", "replicas": 10, "labels": {"team": "core"}}
    signoff_server.approve_with_edits(
        asked["id"], {"service": "api", "replicas": 3, "labels": {"team": "core"}}
    )

    assert call.result() == "scaled api to 3"
    assert ran == [("api", 3, {"team": "core"})]


class Fleet:
    def __init__(self) -> None:
        self.resized: list[int] = []

    def resize(self, size: int) -> int:
        self.resized.append(size)
        return size


def test_a_method_keeps_its_receiver_and_takes_the_edit(signoff_server, client):
    title = unique_title("edited method")
    fleet = Fleet()
    resize = require_approval(action="edit.fleet", title=title, client=client)(Fleet.resize)

    call = Outcome(lambda: resize(fleet, 40))
    asked = signoff_server.pending_titled(title)
    assert asked["params"] == {"size": 40}
    signoff_server.approve_with_edits(asked["id"], {"size": 4})

    assert call.result() == 4
    assert fleet.resized == [4]


@pytest.mark.parametrize(
    ("edited", "words"),
    [
        ({"service": "api"}, "missing replicas"),
        ({"service": "api", "replicas": 3, "force": True}, "unknown force"),
    ],
    ids=["a-parameter-removed", "a-parameter-added"],
)
def test_an_edit_that_does_not_fit_the_function_runs_nothing(signoff_server, client, edited, words):
    title = unique_title("edited misfit")
    ran = []

    @require_approval(action="edit.scale", title=title, client=client)
    def scale(service: str, replicas: int) -> None:
        ran.append((service, replicas))

    call = Outcome(lambda: scale("api", 10))
    asked = signoff_server.pending_titled(title)
    signoff_server.approve_with_edits(asked["id"], edited)

    with pytest.raises(EditedParamsError) as refused:
        call.result()
    assert words in str(refused.value)
    assert refused.value.approval.edited_params == edited
    assert ran == []


def test_params_from_cannot_take_an_edit(signoff_server, client):
    title = unique_title("edited params_from")
    ran = []

    @require_approval(
        action="edit.query",
        title=title,
        client=client,
        params_from=lambda sql, connection: {"sql": sql},
    )
    def query(sql: str, connection: object) -> None:
        ran.append(sql)

    call = Outcome(lambda: query("DELETE FROM orders", object()))
    asked = signoff_server.pending_titled(title)
    signoff_server.approve_with_edits(asked["id"], {"sql": "DELETE FROM orders WHERE id = 1"})

    with pytest.raises(EditedParamsError, match="params_from"):
        call.result()
    assert ran == []


async def test_an_async_function_runs_with_the_edit(signoff_server):
    title = unique_title("edited async")
    ran = []

    async with AsyncClient(signoff_server.base_url, signoff_server.api_key) as client:

        @require_approval(action="edit.restart", title=title, client=client)
        async def restart(hosts: list[str]) -> int:
            ran.append(hosts)
            return len(hosts)

        task = asyncio.create_task(restart(["a", "b", "c"]))
        asked = await asyncio.to_thread(signoff_server.pending_titled, title)
        await asyncio.to_thread(signoff_server.approve_with_edits, asked["id"], {"hosts": ["a"]})
        assert await asyncio.wait_for(task, timeout=60) == 1
    assert ran == [["a"]]
