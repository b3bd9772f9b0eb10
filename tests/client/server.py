"""A real ``signoff serve`` process for the client, MCP, example and wheel tests.

It runs on a free 127.0.0.1 port with a temporary config and SQLite database, an agent key
for ``deploy-bot``, and two approvers (alice, bob) signed in to the web inbox, who decide
the way a person does: by posting the inbox's forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from tests.cli import SIGNOFF, run_signoff, signoff_environ
from tests.web.conftest import csrf_token_in
from tests.web.test_end_to_end import free_port

AGENT = "deploy-bot"
APPROVERS = ("alice", "bob")

CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
  {agent}: {{max_open: 1000}}
webhooks: {{allow: ["127.0.0.1/32"]}}  # the tests' webhook receivers listen on loopback
policies:
  - name: quick-expiry
    match: {{action: "expire.*"}}
    on_timeout: expire
    min_timeout: 1s
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
  - name: slow-approvers
    match: {{action: "slow.*"}}
    min_timeout: 1h
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 2h}}]
  - name: two-people
    match: {{action: "pair.*"}}
    quorum: 2
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
  - name: editable
    match: {{action: "edit.*"}}
    edits: allowed
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


class _WaitingOutRateLimits(httpx.HTTPTransport):
    """Retries a 429 after its Retry-After, for up to 20 seconds in all."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + 20.0
        while True:
            response = super().handle_request(request)
            if response.status_code != 429 or time.monotonic() > deadline:
                return response
            response.read()
            response.close()
            time.sleep(float(response.headers.get("Retry-After", "1")))


def unique_title(prefix: str = "client test") -> str:
    return f"{prefix} {uuid.uuid4().hex[:12]}"


def unique_params() -> dict[str, str]:
    """Params no other request has. The server answers an ask identical to a pending one
    (same action and params) with that request, and these tests share one server: a test
    that means a request of its own asks with these."""
    return {"ticket": uuid.uuid4().hex[:12]}


@dataclass
class Approver:
    """A person signed in to the web inbox over HTTP."""

    name: str
    http: httpx.Client

    def decide(self, request_id: str, verdict: str, reason: str | None = None) -> None:
        page = self.http.get(f"/requests/{request_id}")
        assert page.status_code == 200, page.text
        answer = self.http.post(
            f"/requests/{request_id}/{verdict}",
            data={"csrf_token": csrf_token_in(page.text), "reason": reason or ""},
        )
        assert answer.status_code == 303, f"{verdict} was refused: {answer.text[:500]}"

    def approve_with_edits(self, request_id: str, params: dict[str, Any]) -> None:
        """Edit and approve in the inbox: ``params`` instead of what the page shows."""
        page = self.http.get(f"/requests/{request_id}")
        assert page.status_code == 200, page.text
        shown = re.search(r'name="payload_sha256" value="([0-9a-f]{64})"', page.text)
        assert shown is not None, "the page offers no approval"
        answer = self.http.post(
            f"/requests/{request_id}/approve",
            data={
                "csrf_token": csrf_token_in(page.text),
                "payload_sha256": shown.group(1),
                "params": json.dumps(params),
            },
        )
        assert answer.status_code == 303, f"edit and approve was refused: {answer.text[:500]}"


@dataclass
class ServedSignoff:
    """The running server, its agent key and its approvers."""

    base_url: str
    api_key: str
    webhook_secret: str
    config_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    approvers: dict[str, Approver] = field(default_factory=dict)

    def environ(self, **overrides: str) -> dict[str, str]:
        """An environment for a client process: this server, this key, no proxies."""
        skip = ("SIGNOFF_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
        environment = {k: v for k, v in os.environ.items() if not k.upper().startswith(skip)}
        environment.update(SIGNOFF_URL=self.base_url, SIGNOFF_API_KEY=self.api_key)
        environment.update(overrides)
        return environment

    def approve(self, request_id: str, person: str = "alice", reason: str | None = None) -> None:
        self.approvers[person].decide(request_id, "approve", reason)

    def approve_with_edits(
        self, request_id: str, params: dict[str, Any], person: str = "alice"
    ) -> None:
        self.approvers[person].approve_with_edits(request_id, params)

    def deny(self, request_id: str, person: str = "bob", reason: str | None = None) -> None:
        self.approvers[person].decide(request_id, "deny", reason)

    def api(self) -> httpx.Client:
        """A plain HTTP client with the agent key, for looking at what the server holds.

        These looks use the agent's key, so they share its rate limit with the client under
        test: a 429 is waited out as its Retry-After says, as any polite client does.
        """
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
            transport=_WaitingOutRateLimits(),
        )

    def requests_titled(self, title: str) -> list[dict[str, Any]]:
        """The agent's requests with this title."""
        with self.api() as api:
            answer = api.get("/v1/approvals", params={"limit": 500})
        assert answer.status_code == 200, answer.text
        return [item for item in answer.json()["approvals"] if item["title"] == title]

    def pending_titled(self, title: str, within: float = 20.0) -> dict[str, Any]:
        """The pending request with this title, once someone has made it."""
        deadline = time.monotonic() + within
        while True:
            found = [r for r in self.requests_titled(title) if r["status"] == "pending"]
            if found:
                return found[0]
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, f"no pending request titled {title!r}"
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Credentials:
    """The agent's API key and webhook secret, and a sign-in token for each approver."""

    api_key: str
    webhook_secret: str
    sign_in_tokens: dict[str, str]


async def _credentials_in_process(db: Path) -> Credentials:
    store = SqlStore(f"sqlite:///{db}")
    await store.migrate()
    access = AccessStore(store, SystemClock())
    try:
        key = await access.create_agent_key(AGENT)
        webhook_secret = await access.webhook_secret(AGENT)
        tokens = {person: await access.create_login_token(person) for person in APPROVERS}
    finally:
        await store.close()
    return Credentials(key, webhook_secret, tokens)


def _credentials_by_command(
    signoff: Path, config: Path, *, cwd: Path, unset: Iterable[str]
) -> Credentials:
    """Made by ``signoff agents add`` and ``signoff login-link``, as an admin makes them."""

    def answer(*args: str) -> Any:
        result = run_signoff(
            *args, "--json", "--config", str(config), cwd=cwd, unset=unset, signoff=signoff
        )
        assert result.returncode == 0, f"signoff {' '.join(args)} failed:\n{result.stderr}"
        return json.loads(result.stdout)

    agent = answer("agents", "add", AGENT)
    tokens = {
        person: parse_qs(urlsplit(answer("login-link", person)["url"]).query)["token"][0]
        for person in APPROVERS
    }
    return Credentials(agent["key"], agent["webhook_secret"], tokens)


@contextlib.contextmanager
def serve_signoff(
    workdir: Path,
    *,
    signoff: Path = SIGNOFF,
    unset: Iterable[str] = (),
    credentials_by_command: bool = False,
    config_template: str = CONFIG,
    **config_fields: str,
) -> Iterator[ServedSignoff]:
    """Start ``signoff serve`` in ``workdir`` on a fresh database (it migrates it itself);
    stop it (SIGTERM, then kill) afterwards.

    ``signoff`` is the command started, in ``workdir``, with the tests' environment without
    the ``unset`` variables. Once it serves, the credentials are made on its database: with
    this checkout's code in the test process, or with ``credentials_by_command`` by that
    command's own ``agents add`` and ``login-link``. ``config_template`` is the config
    written (a ``str.format`` template of ``port``, ``db``, ``agent`` and ``config_fields``).
    """
    port = free_port()
    db = workdir / "signoff.db"
    config = workdir / "signoff.yaml"
    config.write_text(
        config_template.format(port=port, db=db, agent=AGENT, **config_fields), encoding="utf-8"
    )
    log_path = workdir / "serve.log"
    base = f"http://127.0.0.1:{port}"
    approvers: dict[str, Approver] = {}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(signoff), "serve", "--config", str(config)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=signoff_environ({"PYTHONUNBUFFERED": "1"}, unset),
        )
        try:
            _wait_until_healthy(process, base, log_path)
            if credentials_by_command:
                credentials = _credentials_by_command(signoff, config, cwd=workdir, unset=unset)
            else:
                credentials = asyncio.run(_credentials_in_process(db))
            served = ServedSignoff(
                base,
                credentials.api_key,
                credentials.webhook_secret,
                config,
                process,
                log_path,
                approvers=approvers,
            )
            for person, token in credentials.sign_in_tokens.items():
                http = httpx.Client(base_url=base, timeout=30)
                signed_in = http.post("/login", data={"token": token})
                assert signed_in.status_code == 303, signed_in.text
                approvers[person] = Approver(person, http)
            yield served
        finally:
            for approver in approvers.values():
                approver.http.close()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_healthy(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path, within: float = 30.0
) -> None:
    deadline = time.monotonic() + within
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        time.sleep(0.05)
    what = "exited" if process.poll() is not None else "did not start"
    raise AssertionError(f"signoff serve {what}:\n{log_path.read_text(errors='replace')}")
