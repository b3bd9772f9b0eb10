"""``signoff_client.claude`` in the real Claude Agent SDK: ``query()`` runs the bundled
Claude Code CLI against a scripted model on the fake Messages API, and every Bash call
waits in the session's real ``signoff serve`` until alice or bob clicks in the web inbox.

The model writes two marker files, one Bash call each; the first is approved, the second
denied. The files on disk say which calls ran; the model's tool results say what it was
told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

from signoff_client import AsyncClient
from signoff_client.claude import can_use_tool, pre_tool_use_hook
from tests.client.server import ServedSignoff
from tests.fakes.anthropic import Conversation, FakeAnthropic, Say, ToolCall, ToolResult, Turn
from tests.integrations.claude_cli import RUN_WITHIN, claude_cli, cli_environ

pytestmark = pytest.mark.slow

PROMPT = "Write both marker files."


def writes_both(first: Path, second: Path) -> Any:
    """A model that writes ``first`` with Bash, then ``second``, then ends its turn."""
    commands = [f"echo ran > {first}", f"echo ran > {second}"]

    def script(conversation: Conversation) -> Turn:
        done = len(conversation.results)
        if done < len(commands):
            return ToolCall("Bash", {"command": commands[done], "description": "Write a marker"})
        return Say("Done.")

    return script


def decides(served: ServedSignoff, decisions: list[tuple[str, str, str, str]]) -> Awaitable[None]:
    """People deciding in the web inbox, in order, each once its request is pending:
    (title, approve|deny, person, reason)."""

    def decide_all() -> None:
        for title, verdict, person, reason in decisions:
            asked = served.pending_titled(title, within=RUN_WITHIN)
            getattr(served, verdict)(asked["id"], person, reason)

    return asyncio.to_thread(decide_all)


def options_for(tmp_path: Path, model: FakeAnthropic, **options: Any) -> ClaudeAgentOptions:
    """The SDK's options: the bundled CLI in a project of its own, on the fake model."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    return ClaudeAgentOptions(
        cli_path=claude_cli(),
        cwd=project,
        env=cli_environ(home, model.url, {}),
        **options,
    )


async def run_query(options: ClaudeAgentOptions) -> ResultMessage:
    """``query()`` to its end; its result message."""
    results = []
    async with asyncio.timeout(RUN_WITHIN):
        async for message in query(prompt=PROMPT, options=options):
            if isinstance(message, ResultMessage):
                results.append(message)
    [result] = results
    return result


def results_of(model: FakeAnthropic) -> tuple[ToolResult, ToolResult]:
    first, second = model.results()
    return first, second


async def test_can_use_tool_runs_the_approved_call_and_refuses_the_denied_one(
    signoff_server, tmp_path
):
    first, second = tmp_path / "first", tmp_path / "second"
    with FakeAnthropic(writes_both(first, second)) as model:
        async with AsyncClient(signoff_server.base_url, signoff_server.api_key) as signoff:
            options = options_for(tmp_path, model, can_use_tool=can_use_tool(signoff, wait=30))
            people = decides(
                signoff_server,
                [
                    (f"Bash: echo ran > {first}", "approve", "alice", "fine"),
                    (f"Bash: echo ran > {second}", "deny", "bob", "one is enough"),
                ],
            )
            result, _ = await asyncio.gather(run_query(options), people)
    assert not model.script_errors, model.script_errors
    assert first.read_text() == "ran\n"
    assert not second.exists()
    ran, refused = results_of(model)
    assert not ran.is_error, ran.text
    assert refused.is_error
    [denied] = signoff_server.requests_titled(f"Bash: echo ran > {second}")
    assert refused.text == (
        f"Denied in signoff by bob: one is enough (request {denied['id']}). "
        "Do not run this call, nor the same action another way."
    )
    assert [d["tool_name"] for d in result.permission_denials or []] == ["Bash"]
    [approved] = signoff_server.requests_titled(f"Bash: echo ran > {first}")
    assert approved["action"] == "claude-code.Bash"
    assert approved["status"] == "approved"
    assert approved["params"] == {"command": f"echo ran > {first}", "description": "Write a marker"}


async def test_the_pre_tool_use_hook_gates_calls_an_allow_rule_lets_through(
    signoff_server, tmp_path
):
    """``allowed_tools=["Bash"]`` would run every Bash call unasked (and ``can_use_tool``
    would never be called); the PreToolUse hook still asks signoff about each."""
    first, second = tmp_path / "first", tmp_path / "second"
    with FakeAnthropic(writes_both(first, second)) as model:
        async with AsyncClient(signoff_server.base_url, signoff_server.api_key) as signoff:
            hook = pre_tool_use_hook(signoff, "Bash", wait=30)
            assert (hook.timeout, hook.on_failure) == (90, "block")
            options = options_for(
                tmp_path, model, allowed_tools=["Bash"], hooks={"PreToolUse": [hook]}
            )
            people = decides(
                signoff_server,
                [
                    (f"Bash: echo ran > {first}", "approve", "alice", "fine"),
                    (f"Bash: echo ran > {second}", "deny", "bob", "one is enough"),
                ],
            )
            await asyncio.gather(run_query(options), people)
    assert not model.script_errors, model.script_errors
    assert first.read_text() == "ran\n"
    assert not second.exists()
    ran, refused = results_of(model)
    assert not ran.is_error, ran.text
    assert refused.is_error
    assert "Denied in signoff by bob: one is enough" in refused.text
    [asked] = signoff_server.requests_titled(f"Bash: echo ran > {first}")
    assert f"Working directory: {tmp_path / 'project'}" in asked["details"]


async def test_the_hook_with_signoff_unreachable_refuses_the_call(signoff_server, tmp_path):
    marker = tmp_path / "first"
    with FakeAnthropic(writes_both(marker, tmp_path / "second")) as model:
        async with AsyncClient("http://127.0.0.1:9", signoff_server.api_key) as nowhere:
            hook = pre_tool_use_hook(nowhere, "Bash", wait=1)
            options = options_for(
                tmp_path, model, allowed_tools=["Bash"], hooks={"PreToolUse": [hook]}
            )
            await run_query(options)
    assert not marker.exists()
    refused, _ = results_of(model)
    assert refused.is_error
    assert "signoff could not be asked for approval" in refused.text
