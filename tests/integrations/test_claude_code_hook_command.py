"""The Claude Code hook's own parts: how a call is named for the approvers, and how the
command (``python -m signoff_client.hooks claude_code``, stdin in, JSON out) fails closed.

The command runs as a subprocess, as Claude Code runs it, against the session's real
``signoff serve`` or against nothing at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from signoff_client.hooks.claude_code import (
    Verdict,
    action_for,
    describe_call,
    shorten,
    title_for,
)
from tests.client.server import ServedSignoff, unique_title
from tests.web.test_end_to_end import free_port

HOOK = [sys.executable, "-m", "signoff_client.hooks", "claude_code"]


def pre_tool_use(tool_name: str, tool_input: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A PreToolUse hook input as Claude Code sends it."""
    return {
        "session_id": "0342056e-0055-4b7b-8376-07324d3f0a07",
        "transcript_path": "/home/someone/.claude/projects/p/s.jsonl",
        "cwd": "/srv/project",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool_name,
        "tool_input": tool_input,
        "tool_use_id": f"toolu_{unique_title('').strip()}",
        **more,
    }


def run_hook(
    stdin: str, env: dict[str, str], *options: str, name: str = "claude_code"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HOOK[:-1], name, *options],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def decision_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The hook's PreToolUse output, from a run that exited 0 with JSON on stdout."""
    assert done.returncode == 0, done.stderr
    output: dict[str, Any] = json.loads(done.stdout)["hookSpecificOutput"]
    assert output["hookEventName"] == "PreToolUse"
    return output


# -- naming a call -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_name", "mcp_server", "action"),
    [
        ("Bash", None, "claude-code.Bash"),
        ("WebFetch", None, "claude-code.WebFetch"),
        ("mcp__ops__deploy", None, "claude-code.mcp.ops.deploy"),
        ("mcp__ops_desk__roll_back", "ops_desk", "claude-code.mcp.ops_desk.roll_back"),
        # Only the hook's input can tell where a server's name with "__" ends.
        ("mcp__a__b__c", "a__b", "claude-code.mcp.a__b.c"),
        ("mcp__a__b__c", None, "claude-code.mcp.a.b__c"),
        ("mcp__my server__go", "my server", "claude-code.mcp.my-server.go"),
    ],
)
def test_the_action_names_the_tool_and_an_mcp_tools_server(tool_name, mcp_server, action):
    assert action_for(tool_name, mcp_server) == action


@pytest.mark.parametrize(
    ("tool_name", "tool_input", "title"),
    [
        # What runs, not the model's description of it.
        ("Bash", {"command": "rm -rf build", "description": "Tidy up"}, "Bash: rm -rf build"),
        ("Bash", {"command": "cd app &&\n  make   deploy"}, "Bash: cd app && …"),
        ("Write", {"file_path": "/srv/app/main.py", "content": "x = 1"}, "Write: /srv/app/main.py"),
        (
            "WebFetch",
            {"url": "https://example.com", "prompt": "Read it"},
            "WebFetch: https://example.com",
        ),
        ("Grep", {"pattern": "TODO", "path": "src"}, "Grep: TODO"),
        ("Task", {"description": "Review the diff", "prompt": "..."}, "Task: Review the diff"),
        ("TodoWrite", {"todos": []}, "TodoWrite"),
        ("mcp__ops__deploy", {"service": "web", "version": "1.4"}, "MCP ops/deploy: web"),
    ],
)
def test_the_title_is_the_tool_and_its_main_argument(tool_name, tool_input, title):
    assert title_for(tool_name, tool_input) == title


def test_a_long_argument_is_cut_to_a_title_sized_line():
    command = "echo " + "x" * 300
    title = title_for("Bash", {"command": command})
    assert len(title) == len("Bash: ") + 100
    assert title.endswith("…")
    assert shorten("   \n\n  ") == ""


def test_the_request_is_the_input_as_given_keyed_by_the_tool_use_id():
    tool_input = {"command": "ls", "description": "List", "timeout": 5}
    asked = describe_call("Bash", tool_input, tool_use_id="toolu_01ABC", cwd="/srv/project")
    assert asked.params == tool_input
    assert asked.idempotency_key == "claude-code:toolu_01ABC"
    assert "Working directory: /srv/project" in asked.details
    assert describe_call("Bash", tool_input).idempotency_key is None
    # A key signoff would refuse (not visible ASCII) is not used.
    assert describe_call("Bash", tool_input, tool_use_id="toolu é").idempotency_key is None


def test_a_verdict_is_claude_codes_pre_tool_use_json():
    edited = Verdict("allow", "Approved", updated_input={"command": "ls -l"})
    assert edited.hook_output() == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": "Approved",
            "updatedInput": {"command": "ls -l"},
        }
    }
    assert "updatedInput" not in Verdict("deny", "No").hook_output()["hookSpecificOutput"]


# -- the command fails closed ----------------------------------------------------------------


def test_without_an_api_key_the_call_is_denied_saying_what_to_set(signoff_server):
    env = signoff_server.environ()
    del env["SIGNOFF_API_KEY"]
    done = run_hook(json.dumps(pre_tool_use("Bash", {"command": "ls"})), env)
    output = decision_of(done)
    assert output["permissionDecision"] == "deny"
    assert "SIGNOFF_API_KEY is not set" in output["permissionDecisionReason"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "not a url at all"])
def test_a_bad_signoff_url_denies_the_call(signoff_server, url):
    env = signoff_server.environ(SIGNOFF_URL=url)
    output = decision_of(run_hook(json.dumps(pre_tool_use("Bash", {"command": "ls"})), env))
    assert output["permissionDecision"] == "deny"
    assert "signoff could not be asked" in output["permissionDecisionReason"]


def test_signoff_down_denies_the_call_within_the_wait(signoff_server):
    env = signoff_server.environ(SIGNOFF_URL=f"http://127.0.0.1:{free_port()}")
    done = run_hook(json.dumps(pre_tool_use("Bash", {"command": "ls"})), env, "--wait", "1")
    output = decision_of(done)
    assert output["permissionDecision"] == "deny"
    assert "cannot reach signoff at http://127.0.0.1:" in output["permissionDecisionReason"]


@pytest.mark.parametrize(
    ("stdin", "said"),
    [
        ("{not json", "stdin is not JSON"),
        (json.dumps({"hook_event_name": "PreToolUse", "tool_input": {}}), "no tool_name"),
        (json.dumps({"tool_name": "Bash", "tool_input": "ls"}), "no tool_input object"),
        (
            json.dumps({**pre_tool_use("Bash", {}), "hook_event_name": "PermissionRequest"}),
            "the hook is for PreToolUse; it was run for 'PermissionRequest'",
        ),
    ],
)
def test_input_that_is_not_a_pre_tool_use_call_exits_2_which_blocks(signoff_server, stdin, said):
    done = run_hook(stdin, signoff_server.environ())
    assert done.returncode == 2
    assert done.stdout == ""
    assert said in done.stderr
    assert "the call is refused" in done.stderr


@pytest.mark.parametrize(
    ("name", "options"),
    [("claude", []), ("claude_code", ["--wait", "0"]), ("claude_code", ["--on-timeout", "run"])],
)
def test_a_misconfigured_hook_exits_2_which_blocks(signoff_server, name, options):
    stdin = json.dumps(pre_tool_use("Bash", {"command": "ls"}))
    done = run_hook(stdin, signoff_server.environ(), *options, name=name)
    assert done.returncode == 2
    assert done.stdout == ""


# -- asking twice --------------------------------------------------------------------------


def test_the_hook_run_again_for_the_same_call_finds_its_first_request(
    signoff_server: ServedSignoff, tmp_path
):
    """A second run with the same stdin (the same ``tool_use_id``), as after a resume:
    one request, and the second run answers at once with its decision."""
    marker = unique_title("echo")
    stdin = json.dumps(pre_tool_use("Bash", {"command": marker}))
    env = signoff_server.environ()
    (tmp_path / "stdin.json").write_text(stdin)
    with (tmp_path / "stdin.json").open() as given, (tmp_path / "stdout.json").open("w") as out:
        first = subprocess.Popen(
            [*HOOK, "--wait", "20"], stdin=given, stdout=out, stderr=subprocess.PIPE, env=env
        )
    with first:
        asked = signoff_server.pending_titled(f"Bash: {marker}")
        signoff_server.approve(asked["id"], "alice")
        _, err = first.communicate(timeout=30)
    out = (tmp_path / "stdout.json").read_text()
    assert first.returncode == 0, err
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "allow"
    again = decision_of(run_hook(stdin, env, "--wait", "20"))
    assert again["permissionDecision"] == "allow"
    assert f"(request {asked['id']})" in again["permissionDecisionReason"]
    assert [r["id"] for r in signoff_server.requests_titled(f"Bash: {marker}")] == [asked["id"]]
