"""The Claude examples as examples/README.md shows them, against the session's real
``signoff serve`` and a scripted model on the fake Messages API.

``examples/claude_sdk_agent.py`` runs with the README's command line, word for word, in a
directory laid out as the checkout is (its ``.venv`` the tests' environment); the settings
example is the one the README and docs/frameworks.md describe.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.client.server import ServedSignoff
from tests.examples.test_examples import CLAUDE_SDK
from tests.fakes.anthropic import Conversation, FakeAnthropic, Say, ToolCall, Turn
from tests.integrations.claude_cli import RUN_WITHIN, cli_environ
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "examples" / "README.md"
SDK_EXAMPLE = CLAUDE_SDK
SETTINGS = ROOT / "examples" / "claude_code_settings.json"


def readme_section(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f"examples/README.md has no section {heading!r}"
    return match.group(1)


def pending_while_running(
    served: ServedSignoff, title: str, agent: subprocess.Popen[str]
) -> dict[str, Any]:
    """The pending request titled ``title``, once the agent has made it."""
    found: list[dict[str, Any]] = []

    def made() -> bool:
        assert agent.poll() is None, f"the example ended first: {agent.communicate()}"
        found[:] = [r for r in served.requests_titled(title) if r["status"] == "pending"]
        return bool(found)

    wait_until(made, within=RUN_WITHIN, poll=0.1, what=f"a request titled {title!r}")
    return found[0]


def test_the_readme_shows_the_agent_sdk_example_as_run_here():
    section = readme_section("Claude Agent SDK")
    assert SDK_EXAMPLE in section.splitlines()
    header = (ROOT / "examples" / "claude_sdk_agent.py").read_text(encoding="utf-8")
    assert f"    {SDK_EXAMPLE}\n" in header


def test_the_settings_example_gives_the_hook_a_timeout_above_its_wait_and_blocks_on_failure():
    [entry] = json.loads(SETTINGS.read_text())["hooks"]["PreToolUse"]
    [handler] = entry["hooks"]
    command = re.fullmatch(r"signoff hook claude-code --wait (\d+)", handler["command"])
    assert command is not None, handler["command"]
    wait = int(command[1])
    assert handler["timeout"] > wait
    assert handler["onFailure"] == "block"
    assert "Bash" in entry["matcher"].split("|")
    section = readme_section("Claude Code")
    assert f"`--wait {wait}`" in section
    assert f'`"timeout": {handler["timeout"]}`' in section


def test_the_agent_sdk_example_runs_the_approved_call_and_reports_the_refused_one(
    signoff_server, tmp_path
):
    first, second = tmp_path / "first", tmp_path / "second"
    commands = [f"echo ran > {first}", f"echo ran > {second}"]

    def script(conversation: Conversation) -> Turn:
        done = len(conversation.results)
        if done < len(commands):
            return ToolCall("Bash", {"command": commands[done]})
        return Say("Wrote what I was allowed to.")

    checkout = tmp_path / "signoff"
    (checkout / "examples").mkdir(parents=True)
    shutil.copy2(ROOT / "examples" / "claude_sdk_agent.py", checkout / "examples")
    (checkout / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    at_first = sorted(checkout.rglob("*"))
    (tmp_path / "home").mkdir()
    with FakeAnthropic(script) as model:
        env = cli_environ(
            tmp_path / "home",
            model.url,
            {"SIGNOFF_URL": signoff_server.base_url, "SIGNOFF_API_KEY": signoff_server.api_key},
        )
        with subprocess.Popen(
            ["sh", "-c", SDK_EXAMPLE],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as agent:
            try:
                asked = pending_while_running(signoff_server, f"Bash: {commands[0]}", agent)
                signoff_server.approve(asked["id"], "alice")
                asked = pending_while_running(signoff_server, f"Bash: {commands[1]}", agent)
                signoff_server.deny(asked["id"], "bob", "one file is enough")
                out, err = agent.communicate(timeout=RUN_WITHIN)
            finally:
                if agent.poll() is None:
                    agent.kill()
    assert agent.returncode == 1, err
    assert first.read_text() == "ran\n"
    assert not second.exists()
    lines = out.splitlines()
    assert "Claude: Wrote what I was allowed to." in lines
    assert lines[-1] == f"refused: Bash {{'command': '{commands[1]}'}}"
    assert "Traceback" not in err
    assert sorted(checkout.rglob("*")) == at_first
