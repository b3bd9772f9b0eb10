"""``signoff mcp`` driven by the real Claude Code CLI, offline.

Each test adds signoff to Claude Code as the README says (``claude mcp add signoff -e ...
-- signoff mcp --wait-seconds N``) and runs ``claude -p`` with the tools allowed. The CLI is
the one bundled in the claude-agent-sdk wheel (the dev extra); the model is a script on a
fake Messages API (:mod:`tests.fakes.anthropic`); ``signoff mcp`` talks to the session's
real ``signoff serve``, where alice and bob decide by posting the web inbox's forms while
the CLI waits. Each test asserts what the model was shown in its tool results and what
signoff holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli import SIGNOFF
from tests.client.proxy import FlakyProxy
from tests.client.server import ServedSignoff, unique_title
from tests.fakes.anthropic import (
    Conversation,
    FakeAnthropic,
    Say,
    Script,
    ToolCall,
    ToolResult,
    Turn,
)
from tests.integrations.claude_cli import claude_cli, cli_environ
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

REQUEST = "mcp__signoff__request_approval"
GET = "mcp__signoff__get_approval"
LIST = "mcp__signoff__list_pending_approvals"
CANCEL = "mcp__signoff__cancel_approval"
TOOLS = (REQUEST, GET, LIST, CANCEL)
ALLOW_RULE = "mcp__signoff"
"""The README's allow rule: every tool of the signoff server."""
WAIT_FOR_SERVERS = "WaitForMcpServers"
"""Claude Code's tool for MCP servers still connecting, offered in their tools' place."""
LONG_WAIT = 30
"""``--wait-seconds`` where a person decides during the call: the wait ends at the click."""
RUN_WITHIN = 60.0
"""The longest one ``claude -p`` run may take."""
PROMPT = "Drop the old users table once it is approved."
MAX_CALLS = 10
"""The scripted model gives up after this many tool calls."""


@dataclass
class PrintRun:
    """A ``claude -p`` process running in the background; its JSON result in a file."""

    process: subprocess.Popen[bytes]
    model: FakeAnthropic
    output: Path
    errors: Path

    def until(self, predicate: Callable[[], object], what: str, poll: float = 0.02) -> None:
        """Wait while the run goes on until ``predicate`` holds."""

        def holds() -> object:
            assert self.process.poll() is None, f"claude -p ended first: {self.output.read_text()}"
            return predicate()

        wait_until(holds, within=RUN_WITHIN, poll=poll, what=what)

    def pending(self, served: ServedSignoff, title: str) -> dict[str, Any]:
        """The pending request titled ``title``, once the model has made it."""
        found: list[dict[str, Any]] = []

        def made() -> bool:
            found[:] = [r for r in served.requests_titled(title) if r["status"] == "pending"]
            return bool(found)

        # Slow polls: they share the agent's rate limit with signoff mcp.
        self.until(made, f"a request titled {title!r}", poll=0.25)
        return found[0]

    def finish(self) -> dict[str, Any]:
        """Wait for the run to end successfully; its result."""
        try:
            self.process.wait(timeout=RUN_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"claude -p ran longer than {RUN_WITHIN} s: {self.errors.read_text()}")
        assert not self.model.script_errors, self.model.script_errors
        assert self.process.returncode == 0, self.errors.read_text()
        result = json.loads(self.output.read_text())
        assert result["subtype"] == "success", result
        return result


@contextlib.contextmanager
def claude_print(
    tmp_path: Path,
    model: FakeAnthropic,
    signoff_env: dict[str, str],
    *,
    wait_seconds: int = LONG_WAIT,
    **cli_env: str,
) -> Iterator[PrintRun]:
    """``claude mcp add signoff -e K=V ... -- signoff mcp --wait-seconds N``, then ``claude
    -p`` with signoff's tools allowed, in the background (killed on the way out if still
    running). ``cli_env``: more of the CLI's environment."""
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    cli, environment = str(claude_cli()), cli_environ(home, model.url, cli_env)
    options = [part for name, value in signoff_env.items() for part in ("-e", f"{name}={value}")]
    command = [str(SIGNOFF), "mcp", "--wait-seconds", str(wait_seconds)]
    added = subprocess.run(
        [cli, "mcp", "add", "signoff", *options, "--", *command],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_WITHIN,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    output, errors = tmp_path / "claude-result.json", tmp_path / "claude-stderr.log"
    with output.open("wb") as out, errors.open("wb") as err:
        process = subprocess.Popen(
            [cli, "-p", PROMPT, "--output-format=json", f"--allowedTools={ALLOW_RULE}"],
            cwd=project,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield PrintRun(process, model, output, errors)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def signoff_env(served: ServedSignoff, **overrides: str) -> dict[str, str]:
    """The MCP server's ``-e`` options: where signoff is, and the agent's key."""
    return {"SIGNOFF_URL": served.base_url, "SIGNOFF_API_KEY": served.api_key, **overrides}


def scripted(script: Script) -> Script:
    """``script`` as a model plays it: while signoff is still connecting (Claude Code then
    offers WaitForMcpServers in place of its tools, which waits about 5 s a call) it waits
    for signoff, and it gives up if signoff failed. ``script`` sees signoff's results only."""

    def model(conversation: Conversation) -> Turn:
        if not set(TOOLS) <= set(conversation.tools):
            waits = [r for r in conversation.results if r.name == WAIT_FOR_SERVERS]
            connecting = not waits or "Still connecting" in waits[-1].text
            if WAIT_FOR_SERVERS in conversation.tools and connecting and len(waits) < 8:
                return ToolCall(WAIT_FOR_SERVERS, {"servers": ["signoff"]})
            return Say("signoff's approval tools are not available, so I will not do it.")
        own = [r for r in conversation.results if r.name in TOOLS]
        return script(dataclasses.replace(conversation, results=own))

    return model


def _pending(conversation: Conversation) -> dict[str, Any] | None:
    """The last tool result, if it says the request is pending."""
    last = conversation.last
    if last is None or last.is_error:
        return None
    answer = last.json()
    return answer if answer["status"] == "pending" else None


def asks(arguments: dict[str, Any]) -> Script:
    """A model that asks for approval with ``arguments``, waits with get_approval while the
    answer is pending, and ends its turn on anything else (a final status, an error)."""

    def script(conversation: Conversation) -> Turn:
        if conversation.last is None:
            return ToolCall(REQUEST, arguments)
        pending = _pending(conversation)
        if pending is not None and len(conversation.results) < MAX_CALLS:
            return ToolCall(GET, {"id": pending["id"]})
        return Say("Done.")

    return scripted(script)


def results(model: FakeAnthropic) -> list[ToolResult]:
    """The results of signoff's tools the model received, in order."""
    return [r for r in model.results() if r.name in TOOLS]


def answer_of(model: FakeAnthropic, name: str = REQUEST) -> dict[str, Any]:
    """The model's only result from the tool ``name``, as JSON; not an error."""
    [result] = [r for r in results(model) if r.name == name]
    assert not result.is_error, result.text
    return result.json()


# -- a person decides in the web inbox ------------------------------------------------------


def test_an_approval_in_the_inbox_reaches_the_model_naming_the_approver(signoff_server, tmp_path):
    title = unique_title("claude")
    arguments = {"action": "db.drop_table", "title": title, "params": {"table": "users_old"}}
    with (
        FakeAnthropic(asks(arguments)) as model,
        claude_print(tmp_path, model, signoff_env(signoff_server)) as run,
    ):
        asked = run.pending(signoff_server, title)
        signoff_server.approve(asked["id"], "alice", "fine")
        run.finish()
    answer = answer_of(model)
    assert answer["id"] == asked["id"]
    assert answer["status"] == "approved"
    assert answer["decided_by"] == "alice"
    assert answer["reason"] == "fine"
    assert answer["params"] == {"table": "users_old"}
    assert answer["next_step"].startswith("Approved by alice: fine.")
    assert "You may now perform exactly this action" in answer["next_step"]
    assert [r["status"] for r in signoff_server.requests_titled(title)] == ["approved"]


def test_a_denial_in_the_inbox_reaches_the_model_with_the_reason(signoff_server, tmp_path):
    title = unique_title("claude")
    with (
        FakeAnthropic(
            asks({"action": "deploy.web", "title": title, "params": {"ticket": title}})
        ) as model,
        claude_print(tmp_path, model, signoff_env(signoff_server)) as run,
    ):
        asked = run.pending(signoff_server, title)
        signoff_server.deny(asked["id"], "bob", "not during the sale")
        run.finish()
    answer = answer_of(model)
    assert answer["id"] == asked["id"]
    assert answer["status"] == "denied"
    assert answer["decided_by"] == "bob"
    assert answer["next_step"].startswith("Denied by bob: not during the sale.")
    assert "Do NOT perform the action" in answer["next_step"]
    assert "approved" not in answer["next_step"].lower()
    assert [r["status"] for r in signoff_server.requests_titled(title)] == ["denied"]


def test_a_denial_after_an_approval_names_the_denier_not_the_approver(signoff_server, tmp_path):
    """Two approvers needed (``pair.*``): alice approves, bob denies; bob decided."""
    title = unique_title("claude")
    with (
        FakeAnthropic(
            asks({"action": "pair.deploy", "title": title, "params": {"ticket": title}})
        ) as model,
        claude_print(tmp_path, model, signoff_env(signoff_server)) as run,
    ):
        asked = run.pending(signoff_server, title)
        signoff_server.approve(asked["id"], "alice", "fine by me")
        signoff_server.deny(asked["id"], "bob", "freeze until Monday")
        run.finish()
    answer = answer_of(model)
    assert answer["status"] == "denied"
    assert answer["decided_by"] == "bob"
    assert answer["reason"] == "freeze until Monday"
    assert answer["next_step"].startswith("Denied by bob: freeze until Monday.")
    assert "alice" not in json.dumps(answer)


def test_a_call_that_ends_pending_is_followed_by_get_approval_until_someone_approves(
    signoff_server, tmp_path
):
    title = unique_title("claude")
    with (
        FakeAnthropic(
            asks({"action": "deploy.web", "title": title, "params": {"ticket": title}})
        ) as model,
        claude_print(tmp_path, model, signoff_env(signoff_server), wait_seconds=1) as run,
    ):
        asked = run.pending(signoff_server, title)
        run.until(lambda: model.calls_sent(GET) >= 1, "a get_approval call")
        signoff_server.approve(asked["id"], "alice")
        run.finish()
    first, *later = results(model)
    assert (first.name, first.is_error) == (REQUEST, False)
    assert first.json()["status"] == "pending"
    assert first.json()["id"] == asked["id"]
    assert f"Call get_approval with id {asked['id']!r}" in first.json()["next_step"]
    assert later, "the model never heard back from get_approval"
    assert {(r.name, r.input["id"]) for r in later} == {(GET, asked["id"])}
    decided = later[-1].json()
    assert (decided["id"], decided["status"], decided["decided_by"]) == (
        asked["id"],
        "approved",
        "alice",
    )
    assert [r["status"] for r in signoff_server.requests_titled(title)] == ["approved"]


def test_the_model_cancels_its_pending_request_and_is_told_not_to_act(signoff_server, tmp_path):
    title = unique_title("claude")

    def script(conversation: Conversation) -> Turn:
        if conversation.last is None:
            return ToolCall(
                REQUEST, {"action": "deploy.web", "title": title, "params": {"ticket": title}}
            )
        pending = _pending(conversation)
        if pending is not None:
            return ToolCall(CANCEL, {"id": pending["id"], "reason": "plan changed"})
        return Say("Cancelled.")

    with (
        FakeAnthropic(scripted(script)) as model,
        claude_print(tmp_path, model, signoff_env(signoff_server), wait_seconds=1) as run,
    ):
        run.finish()
    asked = answer_of(model, REQUEST)
    cancelled = answer_of(model, CANCEL)
    assert asked["status"] == "pending"
    assert cancelled["id"] == asked["id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["decided_by"] is None
    assert "cancelled by deploy-bot: plan changed" in cancelled["next_step"]
    assert "Do NOT perform the action" in cancelled["next_step"]
    [held] = signoff_server.requests_titled(title)
    assert (held["id"], held["status"]) == (asked["id"], "cancelled")


# -- trouble ----------------------------------------------------------------------------------


def test_an_outage_during_the_wait_keeps_the_bound_and_names_the_request(signoff_server, tmp_path):
    """signoff becomes unreachable while the call waits: the call still ends within
    ``--wait-seconds``, and the model learns the id to ask about later."""
    wait_seconds = 2
    title = unique_title("claude")
    proxy = FlakyProxy(int(signoff_server.base_url.rsplit(":", 1)[1]))
    try:
        with (
            FakeAnthropic(
                asks({"action": "deploy.web", "title": title, "params": {"ticket": title}})
            ) as model,
            claude_print(
                tmp_path,
                model,
                signoff_env(signoff_server, SIGNOFF_URL=proxy.url),
                wait_seconds=wait_seconds,
            ) as run,
        ):
            run.until(lambda: proxy.has_sent(b"?wait="), "the tool waiting on signoff")
            proxy.cut()
            run.finish()
    finally:
        proxy.close()
    [asked] = signoff_server.requests_titled(title)  # one request, still pending
    assert asked["status"] == "pending"
    [result] = results(model)
    assert result.is_error, result.text
    assert f"request {asked['id']} is pending" in result.text
    assert f"Call get_approval with id {asked['id']!r}" in result.text
    assert "do not make a new request" in result.text
    assert "Do NOT perform the action" in result.text
    assert result.took is not None
    assert result.took < wait_seconds + 1


def test_without_an_api_key_the_tools_are_offered_and_say_what_to_set(signoff_server, tmp_path):
    title = unique_title("claude")
    without_key = {"SIGNOFF_URL": signoff_server.base_url}
    with (
        FakeAnthropic(
            asks({"action": "deploy.web", "title": title, "params": {"ticket": title}})
        ) as model,
        claude_print(tmp_path, model, without_key) as run,
    ):
        run.finish()
    # Claude Code did not mark the server failed: it offered its tools.
    assert not [r.text for r in model.results() if "Failed to connect" in r.text]
    assert any(set(TOOLS) <= set(turn.tools) for turn in model.turns())
    [result] = results(model)
    assert result.name == REQUEST
    assert result.is_error
    assert "SIGNOFF_API_KEY is not set" in result.text
    assert "Do NOT perform" in result.text
    assert signoff_server.requests_titled(title) == []


def test_asking_again_after_a_client_timeout_finds_the_same_request(signoff_server, tmp_path):
    """Claude Code gives up on the call first (``MCP_TOOL_TIMEOUT``); the model asks again
    with the same arguments and gets the request it already made, not a second one."""
    title = unique_title("claude")
    arguments = {"action": "deploy.web", "title": title, "params": {"ticket": title}}

    def script(conversation: Conversation) -> Turn:
        if len(conversation.results) < 2:
            return ToolCall(REQUEST, arguments)
        return Say("Done.")

    proxy = FlakyProxy(int(signoff_server.base_url.rsplit(":", 1)[1]))

    def asked_again_and_waiting() -> bool:
        # A call's wait is one long poll (it is shorter than a poll): the second is the new
        # call's, however it found its request.
        waits = [line for line in proxy.request_lines() if "?wait=" in line]
        return model.calls_sent(REQUEST) >= 2 and len(waits) >= 2

    try:
        with (
            FakeAnthropic(scripted(script)) as model,
            claude_print(
                tmp_path,
                model,
                signoff_env(signoff_server, SIGNOFF_URL=proxy.url),
                wait_seconds=LONG_WAIT,
                MCP_TOOL_TIMEOUT="3000",
            ) as run,
        ):
            asked = run.pending(signoff_server, title)
            run.until(asked_again_and_waiting, "a second request_approval waiting")
            signoff_server.approve(asked["id"], "alice")
            run.finish()
    finally:
        proxy.close()
    first, second = results(model)
    assert first.is_error
    assert "timed out" in first.text
    assert [r["id"] for r in signoff_server.requests_titled(title)] == [asked["id"]]
    assert not second.is_error, second.text
    assert (second.json()["id"], second.json()["status"]) == (asked["id"], "approved")
