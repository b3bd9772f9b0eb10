"""``signoff hook claude-code`` as Claude Code's PreToolUse hook, driven by the real CLI.

Each test writes a project's ``.claude/settings.json`` as docs/frameworks.md shows it (the
hook command, a ``timeout`` above its ``--wait`` and ``"onFailure": "block"``) and runs
``claude -p`` (bundled in claude-agent-sdk) against a scripted model on the fake Messages
API. The hook talks to the session's real ``signoff serve``, where alice and bob decide by
posting the web inbox's forms while the CLI waits. The model asks Bash to write a marker
file: whether the file exists says whether the call ran, and the tool result the model got
says what it was told.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli import SIGNOFF
from tests.client.server import ServedSignoff
from tests.fakes.anthropic import Conversation, FakeAnthropic, Say, ToolCall, ToolResult, Turn
from tests.integrations.claude_cli import ClaudeProject, hook_entry, waiting_for_mcp
from tests.web.test_end_to_end import free_port

pytestmark = pytest.mark.slow

PROMPT = "Write the marker file."
EXAMPLE_SETTINGS = Path(__file__).resolve().parents[2] / "examples" / "claude_code_settings.json"
HOOK_TIMEOUT = 30
"""The hook entry's ``timeout``: above every ``--wait`` here."""


def hook_command(*options: str) -> str:
    return " ".join([str(SIGNOFF), "hook", "claude-code", *options])


def bash_writing(marker: Path) -> dict[str, str]:
    return {"command": f"echo ran > {marker}", "description": "Write the marker file"}


def calls_once(name: str, arguments: dict[str, Any]) -> Any:
    """A model that calls ``name`` once and ends its turn after the result."""

    def script(conversation: Conversation) -> Turn:
        if not conversation.results:
            return ToolCall(name, arguments)
        return Say("Done.")

    return script


def only_result(model: FakeAnthropic) -> ToolResult:
    [result] = model.results()
    return result


def project_with_hook(tmp_path: Path, *options: str, matcher: str = "Bash") -> ClaudeProject:
    command = hook_command(*options)
    entry = hook_entry(command, timeout=HOOK_TIMEOUT, matcher=matcher)
    return ClaudeProject.make(tmp_path, {"hooks": {"PreToolUse": [entry]}})


def signoff_env(served: ServedSignoff, **overrides: str) -> dict[str, str]:
    """What the hook reads, passed to it through Claude Code's environment."""
    return {"SIGNOFF_URL": served.base_url, "SIGNOFF_API_KEY": served.api_key, **overrides}


def project_from_the_example(tmp_path: Path) -> ClaudeProject:
    """examples/claude_code_settings.json as its README says to use it: with the full path
    of ``signoff`` in ``"command"``."""
    settings = json.loads(EXAMPLE_SETTINGS.read_text(encoding="utf-8"))
    for entry in settings["hooks"]["PreToolUse"]:
        for handler in entry["hooks"]:
            handler["command"] = handler["command"].replace("signoff", str(SIGNOFF), 1)
    return ClaudeProject.make(tmp_path, settings)


def test_an_approved_call_runs_and_signoff_was_asked_for_exactly_it(signoff_server, tmp_path):
    """With the settings example, word for word but for the command's path."""
    marker = tmp_path / "marker"
    arguments = bash_writing(marker)
    project = project_from_the_example(tmp_path)
    env = signoff_env(signoff_server, SIGNOFF_REQUESTED_BY="carol")
    title = f"Bash: echo ran > {marker}"
    with (
        FakeAnthropic(calls_once("Bash", arguments)) as model,
        project.start(model, ["-p", PROMPT], env) as run,
    ):
        asked = signoff_server.pending_titled(title)
        signoff_server.approve(asked["id"], "alice", "looks fine")
        run.finish()
    assert marker.read_text() == "ran\n"
    result = only_result(model)
    assert not result.is_error, result.text
    [held] = signoff_server.requests_titled(title)
    assert held["status"] == "approved"
    assert held["action"] == "claude-code.Bash"
    assert held["params"] == arguments
    assert held["requested_by"] == "carol"
    assert "The model describes it as: Write the marker file" in held["details"]
    assert f"Working directory: {project.path}" in held["details"]


def test_a_denied_call_does_not_run_and_the_model_reads_who_denied_it_and_why(
    signoff_server, tmp_path
):
    marker = tmp_path / "marker"
    project = project_with_hook(tmp_path, "--wait", "20")
    title = f"Bash: echo ran > {marker}"
    with (
        FakeAnthropic(calls_once("Bash", bash_writing(marker))) as model,
        project.start(model, ["-p", PROMPT], signoff_env(signoff_server)) as run,
    ):
        asked = signoff_server.pending_titled(title)
        signoff_server.deny(asked["id"], "bob", "not on a Friday")
        answer = run.finish()
    assert not marker.exists()
    result = only_result(model)
    assert result.is_error
    assert f"Denied in signoff by bob: not on a Friday (request {asked['id']})." in result.text
    assert "Do not run this call" in result.text
    assert [d["tool_name"] for d in answer["permission_denials"]] == ["Bash"]


def test_nobody_deciding_in_time_refuses_the_call_and_withdraws_the_request(
    signoff_server, tmp_path
):
    marker = tmp_path / "marker"
    project = project_with_hook(tmp_path, "--wait", "1")
    with FakeAnthropic(calls_once("Bash", bash_writing(marker))) as model:
        project.run(model, ["-p", PROMPT], signoff_env(signoff_server))
    assert not marker.exists()
    result = only_result(model)
    assert result.is_error
    assert "Nobody decided in signoff within 1 s" in result.text
    [held] = signoff_server.requests_titled(f"Bash: echo ran > {marker}")
    assert held["status"] == "cancelled"
    assert held["decision"]["reason"] == "the agent stopped waiting after 1 s"
    assert f"(request {held['id']})" in result.text


def test_the_ask_fallback_is_a_refusal_under_print_mode(signoff_server, tmp_path):
    """``--on-timeout ask`` hands the call to Claude Code's own prompt; ``claude -p`` has
    nobody to ask, so the call is refused."""
    marker = tmp_path / "marker"
    project = project_with_hook(tmp_path, "--wait", "1", "--on-timeout", "ask")
    with FakeAnthropic(calls_once("Bash", bash_writing(marker))) as model:
        answer = project.run(model, ["-p", PROMPT], signoff_env(signoff_server))
    assert not marker.exists()
    result = only_result(model)
    assert result.is_error
    assert [d["tool_name"] for d in answer["permission_denials"]] == ["Bash"]
    [held] = signoff_server.requests_titled(f"Bash: echo ran > {marker}")
    assert held["status"] == "cancelled"


def test_signoff_unreachable_blocks_the_call_even_where_an_allow_rule_matches(
    signoff_server, tmp_path
):
    marker = tmp_path / "marker"
    project = project_with_hook(tmp_path, "--wait", "1")
    nowhere = signoff_env(signoff_server, SIGNOFF_URL=f"http://127.0.0.1:{free_port()}")
    with FakeAnthropic(calls_once("Bash", bash_writing(marker))) as model:
        project.run(model, ["-p", PROMPT, "--allowedTools=Bash"], nowhere)
    assert not marker.exists()
    result = only_result(model)
    assert result.is_error
    assert "signoff could not be asked for approval, so this call is refused" in result.text


def test_a_hook_killed_at_its_timeout_blocks_the_call_with_on_failure_block(
    signoff_server, tmp_path
):
    """Why the docs ask for ``"onFailure": "block"``: a hook that outlives the entry's
    ``timeout`` is cancelled, and without it the call would go ahead."""
    marker = tmp_path / "marker"
    entry = hook_entry(hook_command("--wait", "30"), timeout=1)
    project = ClaudeProject.make(tmp_path, {"hooks": {"PreToolUse": [entry]}})
    with FakeAnthropic(calls_once("Bash", bash_writing(marker))) as model:
        project.run(model, ["-p", PROMPT, "--allowedTools=Bash"], signoff_env(signoff_server))
    assert not marker.exists()
    result = only_result(model)
    assert result.is_error
    assert 'blocking because onFailure is "block"' in result.text


def test_a_deferred_call_resumed_after_an_approval_runs_and_asks_only_once(
    signoff_server, tmp_path
):
    """``--on-timeout defer``: the ``claude -p`` run ends with the call deferred and the
    request pending; once approved, ``claude -p --resume`` fires the hook again for the
    same ``tool_use_id``, which finds that request instead of making another."""
    marker = tmp_path / "marker"
    project = project_with_hook(tmp_path, "--wait", "1", "--on-timeout", "defer")
    env = signoff_env(signoff_server)
    title = f"Bash: echo ran > {marker}"
    with FakeAnthropic(calls_once("Bash", bash_writing(marker))) as model:
        deferred = project.run(model, ["-p", PROMPT], env)
        assert deferred["stop_reason"] == "tool_deferred", deferred
        assert not marker.exists()
        [asked] = signoff_server.requests_titled(title)
        assert asked["status"] == "pending"
        signoff_server.approve(asked["id"], "alice")
        resumed = project.run(model, ["-p", "--resume", deferred["session_id"]], env)
    assert resumed["subtype"] == "success", resumed
    assert marker.read_text() == "ran\n"
    assert [r["id"] for r in signoff_server.requests_titled(title)] == [asked["id"]]
    result = only_result(model)
    assert not result.is_error, result.text


def test_an_mcp_tool_is_asked_about_as_its_server_and_tool(signoff_server, tmp_path):
    """The tool ``mcp__ops_desk__list_pending_approvals`` (signoff's own MCP server, added
    as ``ops_desk``): the server's name, underscore and all, comes from the hook's input."""
    tool = "mcp__ops_desk__list_pending_approvals"
    project = project_with_hook(tmp_path, "--wait", "20", matcher="mcp__ops_desk__.*")
    project.add_mcp_server("ops_desk", [str(SIGNOFF), "mcp"], signoff_env(signoff_server))

    def script(conversation: Conversation) -> Turn:
        if tool not in conversation.tools:
            return waiting_for_mcp(conversation, "ops_desk")
        if not [r for r in conversation.results if r.name == tool]:
            return ToolCall(tool, {})
        return Say("Done.")

    with (
        FakeAnthropic(script) as model,
        project.start(model, ["-p", PROMPT], signoff_env(signoff_server)) as run,
    ):
        asked = signoff_server.pending_titled("MCP ops_desk/list_pending_approvals")
        signoff_server.approve(asked["id"], "alice")
        run.finish()
    assert asked["action"] == "claude-code.mcp.ops_desk.list_pending_approvals"
    assert asked["params"] == {}
    [result] = [r for r in model.results() if r.name == tool]
    assert not result.is_error, result.text
    assert "approvals" in result.json()  # the MCP tool ran and answered
