"""Each file in examples/ runs as a user would run it, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.client.server import ServedSignoff

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VENV_BIN = Path(sys.executable).parent


def example_environ(server: ServedSignoff) -> dict[str, str]:
    """The server's URL and key, and the virtualenv's ``signoff`` and ``python`` first on PATH."""
    return server.environ(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def decide_in_order(
    server: ServedSignoff, decisions: list[tuple[str, str, str]]
) -> threading.Thread:
    """Decide each request, by title, once it appears: (title, approve|deny, person)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for title, verdict, person in decisions:
                asked = server.pending_titled(title, within=30)
                getattr(server, verdict)(asked["id"], person)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_agent_decorator_drops_only_the_approved_table(signoff_server):
    person = decide_in_order(
        signoff_server,
        [
            ("Drop table analytics.events_2019", "approve", "alice"),
            ("Drop table analytics.events_2020", "deny", "bob"),
        ],
    )
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "agent_decorator.py"), "events_2019", "events_2020"],
        capture_output=True,
        text=True,
        env=example_environ(signoff_server),
        timeout=120,
        check=False,
    )
    person.join(timeout=30)
    assert not person.errors  # type: ignore[attr-defined]
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dropped analytics.events_2019"
    assert lines[1].startswith("not dropping events_2020: request ")
    assert "denied by bob" in lines[1]
    assert "Traceback" not in result.stderr


def run_deploy(server: ServedSignoff, workdir: Path, version: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(EXAMPLES / "run_deploy.sh"), version],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=example_environ(server),
    )


def test_run_deploy_deploys_when_approved(signoff_server, tmp_path):
    deploy = run_deploy(signoff_server, tmp_path, "1.4")
    person = decide_in_order(signoff_server, [("Deploy web 1.4 to production", "approve", "alice")])
    out, err = deploy.communicate(timeout=120)
    person.join(timeout=30)
    assert deploy.returncode == 0, err
    assert "deployed web 1.4" in out
    assert (tmp_path / "deployed.txt").read_text() == "web 1.4 is live\n"
    asked = signoff_server.requests_titled("Deploy web 1.4 to production")[0]
    assert asked["params"]["cwd"] == str(tmp_path)
    assert asked["params"]["argv"][-1] == "1.4"


def test_run_deploy_does_nothing_when_denied(signoff_server, tmp_path):
    deploy = run_deploy(signoff_server, tmp_path, "1.5")
    person = decide_in_order(signoff_server, [("Deploy web 1.5 to production", "deny", "bob")])
    _out, err = deploy.communicate(timeout=120)
    person.join(timeout=30)
    assert deploy.returncode == 1
    assert "not deployed: denied" in err
    assert not (tmp_path / "deployed.txt").exists()


async def test_mcp_client_config_starts_a_server_with_the_approval_tools(signoff_server, tmp_path):
    config = json.loads((EXAMPLES / "mcp_client_config.json").read_text())
    entry = config["mcpServers"]["signoff"]
    assert set(entry["env"]) == {"SIGNOFF_URL", "SIGNOFF_API_KEY"}
    # The user fills in their server and key; here, the test server's.
    env = {"SIGNOFF_URL": signoff_server.base_url, "SIGNOFF_API_KEY": signoff_server.api_key}
    parameters = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={**env, "PATH": example_environ(signoff_server)["PATH"]},
    )
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
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
