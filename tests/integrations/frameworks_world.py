"""A real ``signoff serve`` for the OpenAI Agents SDK and LangChain integration tests.

It is ``tests.client.server``'s server (agent ``deploy-bot``, approvers alice and bob who
decide by posting the web inbox's forms) with policies of these tests: calls of the
``list_tables`` tools are approved by policy at once, everything else asks alice or bob.
``frameworks_server`` is a fixture for a test module (one server per module that uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli import SIGNOFF, signoff_environ
from tests.client.server import (
    AGENT,
    Approver,
    ServedSignoff,
    _credentials_in_process,
    _wait_until_healthy,
)
from tests.client.signing import SigningKey
from tests.web.test_end_to_end import free_port

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
    port = free_port()
    db = workdir / "signoff.db"
    config = workdir / "signoff.yaml"
    config.write_text(
        CONFIG.format(port=port, db=db, agent=AGENT, extra_policies=extra_policies),
        encoding="utf-8",
    )
    log_path = workdir / "serve.log"
    base = f"http://127.0.0.1:{port}"
    approvers: dict[str, Approver] = {}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SIGNOFF), "serve", "--config", str(config)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=signoff_environ({"PYTHONUNBUFFERED": "1"}, ()),
        )
        try:
            _wait_until_healthy(process, base, log_path)
            credentials = asyncio.run(_credentials_in_process(db))
            for person, token in credentials.sign_in_tokens.items():
                http = httpx.Client(base_url=base, timeout=30)
                signed_in = http.post("/login", data={"token": token})
                assert signed_in.status_code == 303, signed_in.text
                approvers[person] = Approver(person, http)
            yield ServedSignoff(
                base,
                credentials.api_key,
                credentials.webhook_secret,
                config,
                process,
                log_path,
                approvers=approvers,
            )
        finally:
            for approver in approvers.values():
                approver.http.close()
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
