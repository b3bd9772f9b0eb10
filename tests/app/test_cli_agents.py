"""``signoff agents add|list|revoke`` and ``signoff login-link``, run as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from config import load_config

SIGNOFF = Path(sys.executable).with_name("signoff")

CONFIG = """\
version: 1
server: {{public_url: "http://127.0.0.1:8443/signoff/"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
  deploy-bot: {{allow: ["deploy.*"]}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


def signoff(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    return subprocess.run(
        [str(SIGNOFF), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "signoff.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "signoff.db"), encoding="utf-8")
    return path


@pytest.fixture
async def api(config_file) -> AsyncIterator[httpx.AsyncClient]:
    """The agent API of an in-process app on the same database the commands use."""
    runtime = build_runtime(load_config(config_file), AppOptions(web_inbox=False))
    app = build_http_app(runtime)
    await runtime.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
    await runtime.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def add_key(config_file: Path) -> str:
    added = signoff("agents", "add", "deploy-bot", "--config", str(config_file), "--json")
    assert added.returncode == 0, added.stderr
    body = json.loads(added.stdout)
    assert body["agent"] == "deploy-bot"
    return body["key"]


def test_agents_add_prints_the_key_once_with_an_export_hint(config_file):
    added = signoff("agents", "add", "deploy-bot", "--config", str(config_file))
    assert added.returncode == 0, added.stderr
    output = added.stdout + added.stderr
    key = output.split("export SIGNOFF_API_KEY=", 1)[1].split()[0]
    assert key.startswith("so_")
    assert output.count(key) == 1
    assert "shown once" in output


async def test_added_key_works_against_the_api(config_file, api):
    key = await asyncio.to_thread(add_key, config_file)
    response = await api.get("/v1/approvals", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json() == {"approvals": []}


def test_agents_add_for_an_unconfigured_agent_exits_2_and_says_how(config_file):
    result = signoff("agents", "add", "ghost-bot", "--config", str(config_file))
    assert result.returncode == 2
    assert str(config_file) in result.stderr
    assert "ghost-bot" in result.stderr
    assert "agents:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    listed = signoff("agents", "list", "--config", str(config_file), "--json")
    assert json.loads(listed.stdout) == []


def test_agents_list_shows_keys_but_never_their_secrets(config_file):
    first = add_key(config_file)
    second = add_key(config_file)
    listed = signoff("agents", "list", "--config", str(config_file))
    assert listed.returncode == 0, listed.stderr
    as_json = signoff("agents", "list", "--config", str(config_file), "--json")
    rows = json.loads(as_json.stdout)
    assert [row["agent"] for row in rows] == ["deploy-bot", "deploy-bot"]
    assert all(row["revoked_at"] is None for row in rows)
    for key in (first, second):
        _prefix, key_id, secret = key.split("_", 2)
        assert key_id in listed.stdout
        assert key_id in {row["key_id"] for row in rows}
        assert secret not in listed.stdout + listed.stderr + as_json.stdout


async def test_revoked_key_gets_401(config_file, api):
    key = await asyncio.to_thread(add_key, config_file)
    assert (await api.get("/v1/approvals", headers=bearer(key))).status_code == 200

    revoked = await asyncio.to_thread(
        signoff, "agents", "revoke", "deploy-bot", "--config", str(config_file)
    )
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 1 live key" in revoked.stdout

    response = await api.get("/v1/approvals", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    listed = await asyncio.to_thread(
        signoff, "agents", "list", "--config", str(config_file), "--json"
    )
    assert json.loads(listed.stdout)[0]["revoked_at"] is not None


def test_revoking_an_agent_without_keys_exits_2(config_file):
    result = signoff("agents", "revoke", "nobody-bot", "--config", str(config_file))
    assert result.returncode == 2
    assert "nobody-bot" in result.stderr


async def test_login_link_is_under_public_url_and_signs_in_once(config_file, tmp_path):
    result = await asyncio.to_thread(
        signoff, "login-link", "alice", "--config", str(config_file), "--ttl", "5m"
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("http://127.0.0.1:8443/signoff/login?token=")
    (token,) = parse_qs(urlsplit(url).query)["token"]

    store = SqlStore(f"sqlite:///{tmp_path / 'signoff.db'}")
    try:
        access = AccessStore(store, SystemClock())
        assert await access.redeem_login_token(token) == "alice"
        assert await access.redeem_login_token(token) is None
    finally:
        await store.close()


def test_login_link_for_an_unknown_person_exits_2(config_file):
    result = signoff("login-link", "mallory", "--config", str(config_file))
    assert result.returncode == 2
    assert "mallory" in result.stderr
    assert "people:" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_login_link_with_a_bad_ttl_is_a_usage_error(config_file):
    result = signoff("login-link", "alice", "--config", str(config_file), "--ttl", "soon")
    assert result.returncode == 2
    assert "--ttl" in result.stderr
    assert "Traceback" not in result.stderr
