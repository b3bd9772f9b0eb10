"""The real Claude Code CLI, run offline: shared by the MCP, hook and Agent SDK tests.

The CLI is the one bundled in the claude-agent-sdk wheel (the dev extra). It runs with a
temporary home, the fake Messages API of :mod:`tests.fakes.anthropic` as its model, no
traffic but the model's, and none of the tests' own signoff, Anthropic, Claude, MCP or
proxy variables (a test passes what it means to).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.anthropic import Conversation, FakeAnthropic, Say, ToolCall, Turn
from tests.world import missing_prerequisite

NOT_PASSED = (
    *("SIGNOFF_", "ANTHROPIC_", "CLAUDE", "MCP_", "ENABLE_TOOL_SEARCH"),
    *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"),
)
"""Variables of the tests' environment that Claude Code does not get (prefixes)."""


def claude_cli() -> Path:
    """The Claude Code CLI bundled in the claude-agent-sdk wheel."""
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or spec.origin is None:
        missing_prerequisite("claude-agent-sdk is not installed (pip install -e '.[dev]')")
        raise AssertionError("unreachable")
    cli = Path(spec.origin).parent / "_bundled" / "claude"
    if not os.access(cli, os.X_OK):
        missing_prerequisite(f"claude-agent-sdk has no bundled Claude Code CLI at {cli}")
    return cli


def cli_environ(home: Path, model_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The tests' environment for Claude Code, without keys, settings or proxies of ours:
    a temporary home, the fake model, no traffic but the model's; then ``extra``."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith(NOT_PASSED)}
    environment.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=model_url,
        ANTHROPIC_API_KEY="sk-ant-fake-key",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        # Otherwise MCP tools hide behind a search tool that the scripted model does not use.
        ENABLE_TOOL_SEARCH="false",
    )
    environment.update(extra)
    return environment


WAIT_FOR_SERVERS = "WaitForMcpServers"
"""Claude Code's tool for MCP servers still connecting, offered in their tools' place."""
RUN_WITHIN = 60.0
"""The longest one ``claude -p`` run may take."""


def hook_entry(command: str, *, timeout: float, matcher: str = "Bash") -> dict[str, Any]:
    """A settings.json PreToolUse entry as docs/frameworks.md shows it: the command,
    a ``timeout`` above its wait and ``"onFailure": "block"``."""
    handler = {"type": "command", "command": command, "timeout": timeout, "onFailure": "block"}
    return {"matcher": matcher, "hooks": [handler]}


@dataclass
class ClaudeProject:
    """A project directory with ``.claude/settings.json``, and a home of its own."""

    home: Path
    path: Path
    logs: Path

    @classmethod
    def make(cls, root: Path, settings: dict[str, Any]) -> ClaudeProject:
        home, path = root / "home", root / "project"
        (path / ".claude").mkdir(parents=True)
        home.mkdir()
        (path / ".claude" / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
        return cls(home, path, root)

    def add_mcp_server(self, name: str, command: list[str], env: dict[str, str]) -> None:
        """``claude mcp add NAME -e K=V ... -- COMMAND`` for this project."""
        options = [part for key, value in env.items() for part in ("-e", f"{key}={value}")]
        added = subprocess.run(
            [str(claude_cli()), "mcp", "add", name, *options, "--", *command],
            cwd=self.path,
            env=cli_environ(self.home, "http://127.0.0.1:9", {}),
            capture_output=True,
            text=True,
            timeout=RUN_WITHIN,
            check=False,
        )
        assert added.returncode == 0, added.stderr

    def start(self, model: FakeAnthropic, arguments: list[str], env: dict[str, str]) -> ClaudeRun:
        """``claude ARGUMENTS --output-format=json`` in the background."""
        number = len(list(self.logs.glob("claude-*.json")))
        output = self.logs / f"claude-{number}.json"
        errors = self.logs / f"claude-{number}.log"
        with output.open("wb") as out, errors.open("wb") as err:
            process = subprocess.Popen(
                [str(claude_cli()), *arguments, "--output-format=json"],
                cwd=self.path,
                env=cli_environ(self.home, model.url, env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        return ClaudeRun(process, model, output, errors)

    def run(
        self, model: FakeAnthropic, arguments: list[str], env: dict[str, str]
    ) -> dict[str, Any]:
        """``claude ARGUMENTS`` to its end; its JSON result."""
        with self.start(model, arguments, env) as running:
            return running.finish()


@dataclass
class ClaudeRun:
    """A ``claude`` process running in the background; its JSON result in a file. Used as
    a context manager, it is killed on the way out if still running."""

    process: subprocess.Popen[bytes]
    model: FakeAnthropic
    output: Path
    errors: Path

    def __enter__(self) -> ClaudeRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def finish(self) -> dict[str, Any]:
        """Wait for the run to end (exit 0, the script without errors); its JSON result."""
        try:
            self.process.wait(timeout=RUN_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"claude ran longer than {RUN_WITHIN} s: {self.errors.read_text()}"
            ) from None
        assert not self.model.script_errors, self.model.script_errors
        assert self.process.returncode == 0, self.errors.read_text()
        result: dict[str, Any] = json.loads(self.output.read_text())
        return result


def waiting_for_mcp(conversation: Conversation, server: str) -> Turn:
    """The turn of a model whose MCP server's tools are not offered yet: wait for the
    server (Claude Code's WaitForMcpServers, about 5 s a call) while it is connecting,
    and give up once it failed."""
    waits = [r for r in conversation.results if r.name == WAIT_FOR_SERVERS]
    connecting = not waits or "Still connecting" in waits[-1].text
    if WAIT_FOR_SERVERS in conversation.tools and connecting and len(waits) < 8:
        return ToolCall(WAIT_FOR_SERVERS, {"servers": [server]})
    return Say(f"The tools of {server} are not available, so I will not do it.")
