"""Each example runs exactly as examples/README.md says, against a real server, from a
fresh copy of the checkout that it leaves as it found it.

The commands are read out of the README's ``sh`` blocks, so the docs and these tests cannot
drift apart: a documented command that no test here runs fails, and so does a command a
test runs that the README no longer shows. Each runs with ``sh -c`` in a copy of the files
a clone has, whose ``.venv`` is the tests' virtual environment (what ``make run`` makes
there), with the server's address and key set as the two ``export`` lines set them, and
without that environment on the PATH. Approvers decide by posting the web inbox's forms.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.client.server import ServedSignoff
from tests.world import missing_prerequisite

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "examples" / "README.md"
VENV = Path(sys.prefix)
"""The tests' virtual environment: a fresh copy's ``.venv``, as ``make run`` would make it."""

DECORATOR = ".venv/bin/python examples/agent_decorator.py events_2019 events_2020"
DEPLOY = "examples/run_deploy.sh 1.4"
DEPLOY_WITHIN = "examples/run_deploy.sh 1.4 5s"
SIGNOFF_PATH = 'echo "$PWD/.venv/bin/signoff"'
OPENAI_AGENTS = ".venv/bin/python examples/openai_agents_approval.py events_2019"
LANGCHAIN = ".venv/bin/python examples/langchain_approval.py events_2019"
"""Run by tests/integrations/test_framework_examples.py."""
CLAUDE_SDK = (
    '.venv/bin/python examples/claude_sdk_agent.py "Create notes.txt saying hello, then show it"'
)
"""Run by tests/integrations/test_claude_examples.py."""
TESTED = {DECORATOR, DEPLOY, DEPLOY_WITHIN, SIGNOFF_PATH, OPENAI_AGENTS, LANGCHAIN, CLAUDE_SDK}
"""Every command the README shows, but for the ``export`` lines."""
EXPORTED = {"SIGNOFF_URL", "SIGNOFF_API_KEY"}
"""What the ``export`` lines set (the first start prints them); the tests set them so."""

DEPLOY_TITLE = "Deploy web 1.4 to production"
WAITING = 120
"""The longest a command may take here, in seconds."""


def documented_commands() -> list[str]:
    """The command lines of the README's ``sh`` blocks (backslash-newline joins lines)."""
    text = DOCS.read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"^ *```sh\n(.*?)^ *```", text, flags=re.DOTALL | re.MULTILINE):
        joined = textwrap.dedent(block).replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def documented(command: str) -> str:
    assert command in documented_commands(), f"examples/README.md no longer shows {command!r}"
    return command


def everything_in(root: Path) -> set[str]:
    """Every file and directory under ``root`` (a symlinked directory is not entered)."""
    found: set[str] = set()
    for directory, subdirectories, files in os.walk(root):
        for name in [*subdirectories, *files]:
            found.add((Path(directory) / name).relative_to(root).as_posix())
    return found


@dataclass
class Clone:
    """A copy of the checkout as a fresh clone has it, and what was in it at first."""

    path: Path
    at_first: set[str]

    def assert_left_as_it_was(self) -> None:
        now = everything_in(self.path)
        assert now - self.at_first == set(), "the example left these behind"
        assert self.at_first - now == set(), "the example removed these"


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    """The files git has for the checkout (as they are in the working tree, new ones not
    ignored included) copied to a new directory, with the tests' virtualenv as ``.venv``."""
    if sys.prefix == sys.base_prefix:
        missing_prerequisite("the tests do not run in a virtualenv, which the examples need")
    git = shutil.which("git")
    if git is None:
        missing_prerequisite("git, to list the checkout's files")
    assert git is not None
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        missing_prerequisite(f"git cannot list the checkout's files: {listed.stderr!r}")
    copy = tmp_path / "signoff"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # not deleted in the working tree
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)  # with its mode: run_deploy.sh is executable
    (copy / ".venv").symlink_to(VENV, target_is_directory=True)
    return Clone(copy, everything_in(copy))


def shell_environ(server: ServedSignoff) -> dict[str, str]:
    """The environment of a shell with the ``export`` lines pasted: this server's address
    and key. The tests' virtualenv is left off the PATH, as a fresh shell has no ``.venv``
    on it."""
    venv_bin = (VENV / "bin").resolve()
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != venv_bin
    ]
    return server.environ(PATH=os.pathsep.join(path))


def start(
    command: str, clone: Clone, server: ServedSignoff, *, as_a_job: bool = False
) -> subprocess.Popen[str]:
    """``command`` as the README shows it, in the copy's top directory.

    ``as_a_job``: in a process group of its own that holds only the command's processes,
    as a terminal's shell runs it (there, Ctrl-C signals that group and not the shell).
    """
    return subprocess.Popen(
        ["sh", "-c", f"exec {documented(command)}" if as_a_job else documented(command)],
        cwd=clone.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=shell_environ(server),
        start_new_session=as_a_job,
    )


def pending(
    server: ServedSignoff, title: str, where: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The pending request with this title for which ``where`` holds, once it is there."""
    deadline = time.monotonic() + 30
    while True:
        found = [
            asked
            for asked in server.requests_titled(title)
            if asked["status"] == "pending" and where(asked)
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no pending request titled {title!r}"
        time.sleep(0.05)


def asked_in(clone: Clone) -> Callable[[dict[str, Any]], bool]:
    """Whether ``signoff run`` asked for a command in this copy."""
    return lambda asked: asked["params"].get("cwd") == str(clone.path)


def deploy_asked_in(clone: Clone, server: ServedSignoff) -> dict[str, Any]:
    """The one deploy request ``run_deploy.sh`` made in this copy, as it is now."""
    (asked,) = [r for r in server.requests_titled(DEPLOY_TITLE) if asked_in(clone)(r)]
    return asked


class Approvers(threading.Thread):
    """Decides each request, in order, once it is pending: (title, approve|deny, person)."""

    def __init__(
        self,
        server: ServedSignoff,
        decisions: list[tuple[str, str, str]],
        where: Callable[[dict[str, Any]], bool] = lambda _asked: True,
    ) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.decisions = decisions
        self.where = where
        self.errors: list[BaseException] = []
        self.start()

    def run(self) -> None:
        try:
            for title, verdict, person in self.decisions:
                asked = pending(self.server, title, self.where)
                getattr(self.server, verdict)(asked["id"], person)
        except BaseException as exc:
            self.errors.append(exc)

    def finish(self) -> None:
        self.join(timeout=30)
        assert not self.is_alive()
        assert self.errors == []


def test_the_readme_shows_exactly_the_commands_run_here():
    commands = documented_commands()
    exports = [command for command in commands if command.startswith("export ")]
    assert {line.removeprefix("export ").split("=")[0] for line in exports} == EXPORTED
    assert sorted(set(commands) - set(exports)) == sorted(TESTED)


@pytest.mark.parametrize("command", [DECORATOR, DEPLOY, DEPLOY_WITHIN])
def test_each_example_shows_its_commands_in_its_header(command):
    (example,) = re.findall(r"examples/(\S+)", command)
    header = (ROOT / "examples" / example).read_text(encoding="utf-8")
    assert re.search(rf"^[#\s]*{re.escape(command)}$", header, flags=re.MULTILINE)


def test_agent_decorator_drops_the_approved_table_only(signoff_server, clone):
    approvers = Approvers(
        signoff_server,
        [
            ("Drop table analytics.events_2019", "approve", "alice"),
            ("Drop table analytics.events_2020", "deny", "bob"),
        ],
    )
    agent = start(DECORATOR, clone, signoff_server)
    out, err = agent.communicate(timeout=WAITING)
    approvers.finish()
    assert agent.returncode == 1, err
    lines = out.splitlines()
    assert lines[0] == "dropped analytics.events_2019"
    assert lines[1].startswith("not dropping events_2020: request ")
    assert "denied by bob" in lines[1]
    assert "Traceback" not in err
    clone.assert_left_as_it_was()


def test_run_deploy_deploys_once_approved(signoff_server, clone):
    approvers = Approvers(signoff_server, [(DEPLOY_TITLE, "approve", "alice")], asked_in(clone))
    deploy = start(DEPLOY, clone, signoff_server)
    out, err = deploy.communicate(timeout=WAITING)
    approvers.finish()
    assert deploy.returncode == 0, err
    assert out.splitlines() == ["web 1.4 is live", "deployed web 1.4"]
    assert f"signoff is not on the PATH; using {clone.path}/.venv/bin/signoff" in err
    asked = deploy_asked_in(clone, signoff_server)
    assert asked["status"] == "approved"
    assert asked["params"]["argv"][-1] == "1.4"
    clone.assert_left_as_it_was()


def test_run_deploy_runs_nothing_when_denied(signoff_server, clone):
    approvers = Approvers(signoff_server, [(DEPLOY_TITLE, "deny", "bob")], asked_in(clone))
    deploy = start(DEPLOY, clone, signoff_server)
    out, err = deploy.communicate(timeout=WAITING)
    approvers.finish()
    assert deploy.returncode == 1, err
    assert out == ""
    assert "denied by bob (web); not running the command" in err
    assert err.endswith("not deployed: denied, or nobody decided in time\n")
    clone.assert_left_as_it_was()


def test_run_deploy_runs_nothing_when_nobody_decides_in_time(signoff_server, clone):
    deploy = start(DEPLOY_WITHIN, clone, signoff_server)
    out, err = deploy.communicate(timeout=WAITING)
    assert deploy.returncode == 1, err
    assert out == ""
    assert "denied (timeout): nobody decided before the deadline; not running" in err
    assert err.endswith("not deployed: denied, or nobody decided in time\n")
    asked = deploy_asked_in(clone, signoff_server)
    assert (asked["status"], asked["decision"]["by"]) == ("denied", "timeout")
    clone.assert_left_as_it_was()


def test_run_deploy_cancels_the_request_on_ctrl_c(signoff_server, clone):
    deploy = start(DEPLOY, clone, signoff_server, as_a_job=True)
    pending(signoff_server, DEPLOY_TITLE, asked_in(clone))
    os.killpg(deploy.pid, signal.SIGINT)  # Ctrl-C
    out, err = deploy.communicate(timeout=WAITING)
    assert deploy.returncode == 4, err
    assert out == ""
    assert err.endswith("not deployed: cancelled\n")
    assert deploy_asked_in(clone, signoff_server)["status"] == "cancelled"
    clone.assert_left_as_it_was()


async def test_mcp_client_config_with_the_printed_path_serves_the_tools(signoff_server, clone):
    printed = subprocess.run(
        ["sh", "-c", documented(SIGNOFF_PATH)],
        cwd=clone.path,
        capture_output=True,
        text=True,
        env=shell_environ(signoff_server),
        timeout=WAITING,
        check=True,
    )
    command = printed.stdout.strip()
    assert command == f"{clone.path}/.venv/bin/signoff"
    config = json.loads((clone.path / "examples" / "mcp_client_config.json").read_text())
    entry = config["mcpServers"]["signoff"]
    assert set(entry["env"]) == EXPORTED
    # The reader puts in the printed path and their export lines' values; here, the test
    # server's. The tests' PYTHONPATH, when they have one, names the code under test.
    env = {"SIGNOFF_URL": signoff_server.base_url, "SIGNOFF_API_KEY": signoff_server.api_key}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    parameters = StdioServerParameters(command=command, args=entry["args"], env=env, cwd=clone.path)
    with (clone.path.parent / "mcp-stderr.log").open("w") as errlog:
        async with (
            stdio_client(parameters, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
    assert {tool.name for tool in listed.tools} == {
        "request_approval",
        "get_approval",
        "list_pending_approvals",
        "cancel_approval",
    }
    clone.assert_left_as_it_was()
