"""A real ``signoff serve`` for the OpenAI Agents SDK and LangChain integration tests.

It is ``tests.client.server``'s server (agent ``deploy-bot``, approvers alice and bob who
decide by posting the web inbox's forms) with policies of these tests: calls of the
``list_tables`` tools are approved by policy at once, everything else asks alice or bob.
``frameworks_server`` is a fixture for a test module (one server per module that uses it).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.server import ServedSignoff, serve_signoff
from tests.client.signing import SigningKey

POLICY_APPROVED_TOOL = "list_tables"
"""The tool whose calls a policy approves at once, in both frameworks."""

CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
  {agent}: {{max_open: 1000}}
policies:
  - name: reads-run-at-once
    match: {{action: ["openai-agents.list_tables", "langchain.list_tables"]}}
    decision: approve
{extra_policies}\
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


@contextlib.contextmanager
def serve_frameworks_signoff(workdir: Path, *, extra_policies: str = "") -> Iterator[ServedSignoff]:
    """``signoff serve`` with this module's policies (plus ``extra_policies``, YAML list
    items indented by two spaces) on a fresh database; stopped afterwards."""
    with serve_signoff(workdir, config_template=CONFIG, extra_policies=extra_policies) as served:
        yield served


@pytest.fixture(scope="module")
def frameworks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSignoff]:
    with serve_frameworks_signoff(tmp_path_factory.mktemp("frameworks-signoff")) as served:
        yield served


def unique(name: str) -> str:
    """``name`` with a random tail: call ids, thread ids and table names no other test uses
    (the tests share a server, which answers an identical pending ask with that request)."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


class InboxClicks(threading.Thread):
    """Approvers who decide requests in the web inbox, each once it is pending, in order:
    ``(title, "approve" | "deny", person, reason)``. For tests whose agent blocks while
    it waits for the decisions."""

    def __init__(
        self, served: ServedSignoff, decisions: list[tuple[str, str, str, str | None]]
    ) -> None:
        super().__init__(daemon=True)
        self.served = served
        self.decisions = decisions
        self.errors: list[BaseException] = []
        self.start()

    def run(self) -> None:
        try:
            for title, verdict, person, reason in self.decisions:
                asked = self.served.pending_titled(title)
                getattr(self.served, verdict)(asked["id"], person, reason)
        except BaseException as exc:
            self.errors.append(exc)

    def finish(self) -> None:
        self.join(timeout=30)
        assert not self.is_alive(), "the approvers are still waiting for a request"
        assert self.errors == []


def foreign_receipt_keys() -> httpx.Response:
    """A ``GET /v1/receipt-keys`` answer listing a key the server never signed with."""
    return httpx.Response(200, json={"keys": [SigningKey().entry()]})


class ForeignReceiptKeys(httpx.HTTPTransport):
    """The network between agent and server, handing out someone else's receipt keys: no
    receipt verifies, as when an answer did not come from the server."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/receipt-keys":
            return foreign_receipt_keys()
        return super().handle_request(request)


class AsyncForeignReceiptKeys(httpx.AsyncHTTPTransport):
    """``ForeignReceiptKeys`` for an ``AsyncClient``."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/receipt-keys":
            return foreign_receipt_keys()
        return await super().handle_async_request(request)
