"""``signoff request`` and ``signoff run`` as real processes against a real server on 127.0.0.1.

Approvers decide through the server's own service, on the server's event loop, while the
command waits; its exit code must tell the outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from approvals.machine import Status
from approvals.model import ApprovalRequest, Verdict, VoteCommand
from approvals.outcomes import Applied
from bot.app import AppOptions, build_runtime
from bot.cli_client import (
    ApprovalClient,
    ClientSettings,
    RequestSpec,
    Unreachable,
    request_command,
    run_command,
)
from bot.http import build_http_app
from bot.limits import RateLimit
from bot.runtime import Runtime
from config import load_config_text
from signoff_client.canonical import payload_sha256

SIGNOFF = Path(sys.executable).with_name("signoff")
AGENT = "deploy-bot"
T = TypeVar("T")

SERVER_CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
  {agent}: {{max_open: 1000}}
policies:
  - name: quick-expiry
    match: {{action: "expire.*"}}
    on_timeout: expire
    min_timeout: 1s
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


@dataclass
class LiveServer:
    """A signoff server in its own thread and event loop, and an agent key for it."""

    url: str
    key: str
    runtime: Runtime
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=20)

    def pending(self, title: str, within: float = 20.0) -> ApprovalRequest:
        """The pending request with this title, once the command has made it."""
        deadline = time.monotonic() + within
        while True:
            for request in self.call(self._pending()):
                if request.title == title:
                    return request
            assert time.monotonic() < deadline, f"no pending request titled {title!r}"
            time.sleep(0.02)

    async def _pending(self) -> list[ApprovalRequest]:
        async with self.runtime.store.read() as reader:
            return await reader.list_requests(agent=AGENT, status=Status.PENDING)

    def get(self, request_id: str) -> ApprovalRequest:
        request = self.call(self.runtime.service.get(request_id))
        assert request is not None
        return request

    def vote(self, request_id: str, person: str, verdict: Verdict, reason: str | None = None):
        command = VoteCommand(request_id, "web", person, verdict, reason)
        outcome = self.call(self.runtime.service.vote(command))
        assert isinstance(outcome, Applied), outcome
        return outcome

    def environ(self, **overrides: str) -> dict[str, str]:
        """The environment for a client command: this server, this key, no proxies."""
        skip = ("SIGNOFF_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
        environment = {k: v for k, v in os.environ.items() if not k.upper().startswith(skip)}
        environment.update(SIGNOFF_URL=self.url, SIGNOFF_API_KEY=self.key)
        environment.update(overrides)
        return environment


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("cli-request") / "signoff.db"
    config = load_config_text(SERVER_CONFIG.format(db=db, agent=AGENT), "cli-request.yaml")
    unlimited = RateLimit(rate=100_000, burst=100_000)
    runtime = build_runtime(
        config,
        AppOptions(
            sweep_interval=0.2,
            per_agent_limit=unlimited,
            overall_limit=unlimited,
            web_inbox=False,
        ),
    )
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(
            build_http_app(runtime),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
    )
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(uvicorn_server.serve())
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="signoff-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.02)
    port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(f"http://127.0.0.1:{port}", "", runtime, loop)
    live.key = live.call(runtime.access.create_agent_key(AGENT))
    yield live
    uvicorn_server.should_exit = True
    thread.join(timeout=20)
    assert not thread.is_alive(), "the server did not stop"


def title() -> str:
    return f"cli test {uuid.uuid4().hex[:12]}"


def ask(name: str) -> tuple[str, ...]:
    """``signoff request`` for a deploy of its own: the title is a param too, so the server
    never answers it with another test's identical pending request."""
    return ("request", "--action", "deploy.web", "--title", name, "--param", f"ticket={name}")


def signoff(
    server: LiveServer, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIGNOFF), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=server.environ(**env),
        timeout=60,
        check=False,
    )


def start(server: LiveServer, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SIGNOFF), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=server.environ(),
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Traceback" not in out + err, err
    return process.returncode, out, err


# -- request ----------------------------------------------------------------------------------


def test_request_without_wait_prints_the_id_and_exits_0(server):
    name = title()
    result = signoff(
        server, "request", "--action", "deploy.web", "--title", name, "--param", "env=prod"
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"request (\S+) pending", result.stdout)
    assert match, result.stdout
    request = server.get(match.group(1))
    assert request.title == name
    assert request.params == {"env": "prod"}
    assert request.status is Status.PENDING


def test_request_json_sends_params_details_and_timeout(server):
    result = signoff(
        server,
        "request",
        "--action",
        "deploy.web",
        "--title",
        title(),
        "--details",
        "rolls out v2",
        "--param",
        "env=prod",
        "--param-json",
        'replicas={"min": 2, "max": 5}',
        "--requested-by",
        "carol",
        "--timeout",
        "10m",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "pending"
    assert body["details"] == "rolls out v2"
    assert body["params"] == {"env": "prod", "replicas": {"min": 2, "max": 5}}
    assert body["requested_by"] == "carol"
    request = server.get(body["id"])
    assert (request.deadline - request.created_at).total_seconds() == pytest.approx(600, abs=1)


def test_same_idempotency_key_returns_the_same_request(server):
    args = (*ask(title()), "--json")
    first = signoff(server, *args, "--idempotency-key", "deploy-42")
    again = signoff(server, *args, "--idempotency-key", "deploy-42")
    assert first.returncode == again.returncode == 0
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]


def test_request_wait_approved_exits_0_and_says_who(server):
    name = title()
    process = start(server, *ask(name), "--wait")
    request = server.pending(name)
    server.vote(request.id, "alice", Verdict.APPROVE, "looks fine")
    code, out, _err = finish(process)
    assert code == 0
    assert f"request {request.id} approved by alice (web): looks fine" in out


def test_request_wait_denied_exits_1_with_the_reason(server):
    name = title()
    process = start(server, *ask(name), "--wait")
    request = server.pending(name)
    server.vote(request.id, "bob", Verdict.DENY, "not on a Friday")
    code, out, _err = finish(process)
    assert code == 1
    assert "denied by bob (web): not on a Friday" in out


def test_request_wait_expired_exits_3(server):
    result = signoff(
        server, "request", "--action", "expire.soon", "--title", title(), "--timeout", "1", "--wait"
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "expired" in result.stdout


def test_request_wait_cancelled_elsewhere_exits_4(server):
    name = title()
    process = start(server, *ask(name), "--wait", "--json")
    request = server.pending(name)
    outcome = server.call(server.runtime.service.cancel(request.id, AGENT, "superseded"))
    assert isinstance(outcome, Applied)
    code, out, _err = finish(process)
    assert code == 4
    body = json.loads(out)
    assert body["status"] == "cancelled"
    assert body["decision"]["reason"] == "superseded"


def test_ctrl_c_while_waiting_cancels_the_request_and_exits_4(server):
    name = title()
    process = start(server, *ask(name), "--wait")
    request = server.pending(name)
    process.send_signal(signal.SIGINT)
    code, out, _err = finish(process)
    assert code == 4
    assert "cancelled" in out
    cancelled = server.get(request.id)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.decision is not None
    assert cancelled.decision.by == AGENT


def test_missing_api_key_exits_2_with_a_clear_message(server):
    result = signoff(
        server, "request", "--action", "deploy.web", "--title", "t", SIGNOFF_API_KEY=""
    )
    assert result.returncode == 2
    assert "SIGNOFF_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_api_key_exits_2_with_the_api_message(server):
    result = signoff(
        server, "request", "--action", "deploy.web", "--title", "t", SIGNOFF_API_KEY="so_x_y"
    )
    assert result.returncode == 2
    assert "the API key is unknown or revoked" in result.stderr


def test_server_validation_error_exits_2_with_the_api_message(server):
    result = signoff(server, "request", "--action", "not an action", "--title", "t")
    assert result.returncode == 2
    assert "invalid_request" in result.stderr
    assert "action" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_param_is_a_usage_error_before_anything_is_sent(server):
    result = signoff(
        server, "request", "--action", "deploy.web", "--title", "t", "--param-json", "n={oops"
    )
    assert result.returncode == 2
    assert "--param-json" in result.stderr


# -- run --------------------------------------------------------------------------------------


def test_run_approved_runs_the_command_and_passes_its_exit_code(server, tmp_path):
    name = title()
    script = "echo ran > marker.txt; exit 7"
    process = start(
        server,
        "run",
        "--action",
        "deploy.script",
        "--title",
        name,
        "--",
        "sh",
        "-c",
        script,
        cwd=tmp_path,
    )
    request = server.pending(name)
    assert request.params == {"argv": ["sh", "-c", script], "cwd": str(tmp_path)}
    assert not (tmp_path / "marker.txt").exists()
    server.vote(request.id, "alice", Verdict.APPROVE)
    code, _out, err = finish(process)
    assert code == 7, err
    assert (tmp_path / "marker.txt").read_text(encoding="utf-8") == "ran\n"


def test_run_title_defaults_to_the_quoted_command_line(server, tmp_path):
    marker = f"marker {uuid.uuid4().hex[:8]}.txt"
    process = start(server, "run", "--action", "deploy.script", "--", "touch", marker, cwd=tmp_path)
    request = server.pending(f"touch '{marker}'")
    server.vote(request.id, "bob", Verdict.APPROVE)
    code, _out, err = finish(process)
    assert code == 0, err
    assert (tmp_path / marker).exists()


def test_run_denied_never_runs_the_command(server, tmp_path):
    name = title()
    process = start(
        server,
        "run",
        "--action",
        "deploy.script",
        "--title",
        name,
        "--",
        "touch",
        "marker.txt",
        cwd=tmp_path,
    )
    request = server.pending(name)
    server.vote(request.id, "alice", Verdict.DENY, "no")
    code, _out, err = finish(process)
    assert code == 1
    assert "not running" in err
    assert not (tmp_path / "marker.txt").exists()


def test_run_expired_exits_3_without_running(server, tmp_path):
    result = signoff(
        server,
        "run",
        "--action",
        "expire.soon",
        "--timeout",
        "1",
        "--",
        "touch",
        "marker.txt",
        cwd=tmp_path,
    )
    assert result.returncode == 3
    assert not (tmp_path / "marker.txt").exists()


def test_run_of_a_missing_command_asks_nobody(server, tmp_path):
    result = signoff(server, "run", "--action", "deploy.x", "--", "no-such-command-here")
    assert result.returncode == 2
    assert "no-such-command-here" in result.stderr
    assert not any("no-such-command-here" in r.title for r in server.call(server._pending()))


# -- the client against a scripted server (payload checks, network trouble) ------------------


class ScriptedServer:
    """An httpx transport that answers like the agent API, with scripted twists."""

    def __init__(self) -> None:
        self.approval: dict[str, Any] = {}
        self.get_failures = 0
        self.approved_params: dict[str, Any] | None = None
        self.interrupt_on_create = False
        self.calls: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path == "/v1/approvals":
            body = json.loads(request.content)
            self.approval = {
                "id": "req1",
                "status": "pending",
                "action": body["action"],
                "title": body["title"],
                "params": body.get("params", {}),
                "payload_sha256": "",
                "policy": "default",
                "deadline": "2030-01-01T00:00:00+00:00",
                "decision": None,
                "votes": [],
            }
            if self.interrupt_on_create:
                os.kill(os.getpid(), signal.SIGINT)
            return httpx.Response(201, json=self.approval)
        if request.url.path.endswith("/cancel"):
            self.approval |= {
                "status": "cancelled",
                "decision": {
                    "verdict": "cancelled",
                    "by": AGENT,
                    "platform": "api",
                    "reason": json.loads(request.content)["reason"],
                },
            }
            return httpx.Response(200, json=self.approval)
        if self.get_failures:
            self.get_failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        params = self.approved_params or self.approval["params"]
        decided = self.approval | {
            "status": "approved",
            "params": params,
            "payload_sha256": payload_sha256(self.approval["action"], params),
            "decision": {"verdict": "approved", "by": "alice", "platform": "web", "reason": None},
        }
        return httpx.Response(200, json=decided)

    def client(self, retries: int = 3) -> ApprovalClient:
        return ApprovalClient(
            ClientSettings(base_url="http://127.0.0.1:9", api_key="so_a_b"),
            wait_retry_delays=(0.0,) * retries,
            sleep=lambda _seconds: None,
            transport=httpx.MockTransport(self.handle),
        )


def test_run_refuses_when_the_approved_params_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scripted = ScriptedServer()
    scripted.approved_params = {"argv": ["touch", "other.txt"], "cwd": str(tmp_path)}
    code = run_command(
        ["touch", "marker.txt"],
        action="deploy.x",
        title=None,
        details="",
        requested_by=None,
        timeout_seconds=None,
        client=scripted.client(),
    )
    assert code == 2
    assert not (tmp_path / "marker.txt").exists()
    assert not (tmp_path / "other.txt").exists()


def test_network_errors_while_waiting_are_retried(capsys):
    scripted = ScriptedServer()
    scripted.get_failures = 2
    spec = RequestSpec(action="deploy.x", title="t")
    code = request_command(
        spec, wait=True, as_json=False, idempotency_key=None, client=scripted.client(retries=3)
    )
    assert code == 0
    assert scripted.calls.count("GET /v1/approvals/req1") == 3
    assert "approved by alice" in capsys.readouterr().out


def test_network_errors_while_waiting_give_up_after_a_bounded_number_of_retries():
    scripted = ScriptedServer()
    scripted.get_failures = 10
    spec = RequestSpec(action="deploy.x", title="t")
    # A ClientError: the command line prints it and exits 2.
    with pytest.raises(Unreachable, match="cannot reach signoff"):
        request_command(
            spec, wait=True, as_json=False, idempotency_key=None, client=scripted.client(2)
        )
    assert scripted.calls.count("GET /v1/approvals/req1") == 3


def test_ctrl_c_while_the_request_is_being_created_cancels_it_once_it_exists(capsys):
    scripted = ScriptedServer()
    scripted.interrupt_on_create = True
    spec = RequestSpec(action="deploy.x", title="t")
    code = request_command(
        spec, wait=True, as_json=False, idempotency_key=None, client=scripted.client()
    )
    assert code == 4
    assert scripted.calls == ["POST /v1/approvals", "POST /v1/approvals/req1/cancel"]
    assert "cancelled by deploy-bot (api)" in capsys.readouterr().out
