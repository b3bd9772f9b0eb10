"""An approver edits a Claude tool call's input in the web inbox; the edited input runs.

The server runs with a policy that lets approvers edit (``edits: allowed``) for every
``claude-code.*`` action; alice approves by posting the inbox's approve form with the
edited params as JSON in its ``params`` field. Claude Code (through the hook) and the
Claude Agent SDK (through ``can_use_tool``) must then run the *whole* edited input, and
only once the signed receipt covers it. The model asks Bash to write one file; the edit
writes another.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

from signoff_client import AsyncClient
from signoff_client.claude import can_use_tool
from tests.cli import SIGNOFF
from tests.client.server import CONFIG, ServedSignoff, serve_signoff
from tests.fakes.anthropic import Conversation, FakeAnthropic, Say, ToolCall, Turn
from tests.integrations.claude_cli import (
    RUN_WITHIN,
    ClaudeProject,
    claude_cli,
    cli_environ,
    hook_entry,
)
from tests.web.conftest import csrf_token_in

pytestmark = pytest.mark.slow

EDITABLE = """\
  - name: claude-edits
    match: {{action: "claude-code.*"}}
    edits: allowed
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""
PROMPT = "Write the marker file."


@pytest.fixture(scope="module")
def editable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSignoff]:
    """A ``signoff serve`` of this module's own, whose Claude actions approvers may edit."""
    config = CONFIG.replace("policies:\n", "policies:\n" + EDITABLE, 1)
    with serve_signoff(tmp_path_factory.mktemp("edits"), config_template=config) as served:
        yield served


def approve_with_edits(
    served: ServedSignoff, request_id: str, person: str, params: dict[str, Any]
) -> None:
    """``person`` approves in the web inbox with the params changed to ``params``."""
    approver = served.approvers[person]
    page = approver.http.get(f"/requests/{request_id}")
    assert page.status_code == 200, page.text
    answer = approver.http.post(
        f"/requests/{request_id}/approve",
        data={
            "csrf_token": csrf_token_in(page.text),
            "reason": "write the other file",
            "params": json.dumps(params),
        },
    )
    assert answer.status_code == 303, f"the edited approval was refused: {answer.text[:500]}"


def writes(marker: Path) -> Any:
    def script(conversation: Conversation) -> Turn:
        if not conversation.results:
            return ToolCall("Bash", {"command": f"echo ran > {marker}", "description": "Mark"})
        return Say("Done.")

    return script


def test_claude_code_runs_the_input_the_approver_edited(editable_server, tmp_path):
    asked_for, edited_to = tmp_path / "asked-for", tmp_path / "edited-to"
    edited = {"command": f"echo edited > {edited_to}", "description": "Mark the other"}
    command = f"{SIGNOFF} hook claude-code --wait 20"
    project = ClaudeProject.make(
        tmp_path, {"hooks": {"PreToolUse": [hook_entry(command, timeout=30)]}}
    )
    env = {"SIGNOFF_URL": editable_server.base_url, "SIGNOFF_API_KEY": editable_server.api_key}
    with (
        FakeAnthropic(writes(asked_for)) as model,
        project.start(model, ["-p", PROMPT], env) as run,
    ):
        asked = editable_server.pending_titled(f"Bash: echo ran > {asked_for}")
        approve_with_edits(editable_server, asked["id"], "alice", edited)
        run.finish()
    assert not asked_for.exists()
    assert edited_to.read_text() == "edited\n"
    [result] = model.results()
    assert not result.is_error, result.text
    [held] = editable_server.requests_titled(f"Bash: echo ran > {asked_for}")
    assert held["params"] == {"command": f"echo ran > {asked_for}", "description": "Mark"}
    assert held["edited_params"] == edited


async def test_the_agent_sdk_runs_the_input_the_approver_edited(editable_server, tmp_path):
    asked_for, edited_to = tmp_path / "asked-for", tmp_path / "edited-to"
    edited = {"command": f"echo edited > {edited_to}"}
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()

    def approver() -> None:
        asked = editable_server.pending_titled(f"Bash: echo ran > {asked_for}", within=RUN_WITHIN)
        approve_with_edits(editable_server, asked["id"], "alice", edited)

    with FakeAnthropic(writes(asked_for)) as model:
        async with AsyncClient(editable_server.base_url, editable_server.api_key) as signoff:
            options = ClaudeAgentOptions(
                cli_path=claude_cli(),
                cwd=project,
                env=cli_environ(home, model.url, {}),
                can_use_tool=can_use_tool(signoff, wait=30),
            )

            async def run_agent() -> list[ResultMessage]:
                messages = [m async for m in query(prompt=PROMPT, options=options)]
                return [m for m in messages if isinstance(m, ResultMessage)]

            async with asyncio.timeout(RUN_WITHIN):
                [result], _ = await asyncio.gather(run_agent(), asyncio.to_thread(approver))
    assert not model.script_errors, model.script_errors
    assert result.subtype == "success"
    assert not asked_for.exists()
    assert edited_to.read_text() == "edited\n"
