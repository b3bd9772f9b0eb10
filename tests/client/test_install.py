"""``pip install ./client`` in a fresh virtual environment: what an agent's machine gets.

The client is its own distribution so that an agent does not install the server. This
installs ``client/`` (a copy, so the build writes nothing into the checkout) into a new
venv, checks the installed set holds no web framework, database layer, chat SDK or MCP,
and asks the session's real ``signoff serve`` for an approval from that venv alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import signoff_environ
from tests.client.server import ServedSignoff, unique_params, unique_title

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).resolve().parents[2] / "client"
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "pydantic",
    "pydantic-settings",
    "slack-bolt",
    "slack-sdk",
    "python-telegram-bot",
    "discord-py",
    "microsoft-teams-apps",
    "aiosmtplib",
    "mcp",
    "apscheduler",
    "prometheus-client",
    "signoff",
}
"""Distributions (normalised names) that belong to the server, never to its client."""
UNSET = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
"""What could lead the venv's interpreter back to the checkout or the tests' venv."""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with ``pip install ./client`` done in it; its interpreter."""
    work = tmp_path_factory.mktemp("client-install")
    source = work / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = work / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "./client"],
        cwd=work,
        capture_output=True,
        text=True,
        env=signoff_environ(unset=UNSET),
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield python
    shutil.rmtree(venv)


def _run_in(python: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``script`` run by the venv's interpreter from a directory outside the checkout."""
    return subprocess.run(
        [str(python), "-c", textwrap.dedent(script)],
        cwd=python.parents[2],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k not in UNSET},
        timeout=120,
        check=False,
    )


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_client_installs_without_anything_of_the_server(client_venv):
    listed = _run_in(
        client_venv,
        """
        import json
        from importlib.metadata import distributions
        print(json.dumps(sorted(d.metadata["Name"] for d in distributions())))
        """,
        signoff_environ(),
    )
    assert listed.returncode == 0, listed.stderr
    installed = {_normalised(name) for name in json.loads(listed.stdout)}
    assert {"signoff-client", "httpx", "cryptography"} <= installed
    assert installed.isdisjoint(SERVER_ONLY), sorted(installed & SERVER_ONLY)


def test_the_installed_client_asks_waits_and_checks_the_receipt(
    client_venv, signoff_server: ServedSignoff
):
    title = unique_title("client-only install")
    asked = subprocess.Popen(
        [
            str(client_venv),
            "-c",
            textwrap.dedent(
                f"""
                import json, signoff_client
                from signoff_client import Client, verify_receipt
                with Client() as signoff:
                    asked = signoff.request(
                        "deploy.web", {title!r}, params={unique_params()!r}
                    )
                    approval = signoff.wait_approved(asked.id, timeout=60)
                    verify_receipt(signoff.receipt(approval.id), approval.action,
                                   approval.params, signoff.receipt_keys())
                print(json.dumps({{"status": approval.status,
                                   "by": approval.approvers,
                                   "from": signoff_client.__file__}}))
                """
            ),
        ],
        cwd=client_venv.parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in signoff_server.environ().items() if k not in UNSET},
    )
    try:
        pending = signoff_server.pending_titled(title)
        signoff_server.approve(pending["id"], "alice")
        out, err = asked.communicate(timeout=60)
    finally:
        if asked.poll() is None:
            asked.kill()
            asked.communicate()
    assert asked.returncode == 0, err
    answer = json.loads(out)
    assert answer["status"] == "approved"
    assert answer["by"] == ["alice"]
    assert Path(answer["from"]).is_relative_to(client_venv.parents[1])
