"""End to end: the real `signoff serve` process, an agent over HTTP, a human in Chromium.

An agent creates a request with curl-like HTTP and long-polls for it; a person signs in to
the web inbox through a sign-in link and approves in a real browser; the long-poll returns
within 200 ms of the decision; the audit chain verifies; SIGTERM stops the process cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from tests.waiting import wait_for

SIGNOFF = Path(sys.executable).with_name("signoff")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
  deploy-bot: {{allow: ["db.*", "deploy.*"]}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


@pytest.fixture
async def served(tmp_path):
    """A `signoff serve` process on a free port, with an agent key and a sign-in link."""
    port = free_port()
    db = tmp_path / "e2e.db"
    config = tmp_path / "signoff.yaml"
    config.write_text(CONFIG.format(port=port, db=db), encoding="utf-8")
    store = SqlStore(f"sqlite:///{db}")
    await store.migrate()
    access = AccessStore(store, SystemClock())
    key = await access.create_agent_key("deploy-bot")
    login = await access.create_login_token("alice")
    await store.close()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [str(SIGNOFF), "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"

    async def healthy():
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/healthz")).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            return False

    try:
        await wait_for(healthy, within=30, poll=0.05)
        yield base, key, f"{base}/login?token={login}", config, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


async def test_agent_asks_human_approves_in_browser_agent_hears_at_once(
    served, browser_page, tmp_path
):
    base, key, login_link, config, process = served
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as agent:
        created = await agent.post(
            "/v1/approvals",
            headers=headers,
            json={
                "action": "db.drop_table",
                "title": "Drop table users",
                "params": {"table": "users", "database": "prod"},
            },
        )
        assert created.status_code == 201, created.text
        request = created.json()

        async def poll_until_final():
            response = await agent.get(f"/v1/approvals/{request['id']}?wait=55", headers=headers)
            return response, datetime.now(UTC)  # when the agent heard the answer

        long_poll = asyncio.create_task(poll_until_final())

        page = browser_page
        await page.goto(login_link)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("link", name="Drop table users").click()
        await expect(page.locator(".hash")).to_have_text(request["payload_sha256"])
        assert not long_poll.done()
        await page.get_by_role("button", name="Approve").click()
        await expect(page.locator(".status-line")).to_contain_text("Approved by alice")
        await page.screenshot(path=tmp_path / "e2e-approved.png", full_page=True)

        answered, heard_at = await asyncio.wait_for(long_poll, timeout=30)
        final = answered.json()
        assert final["status"] == "approved"
        assert final["decision"]["by"] == "alice"
        assert final["decision"]["platform"] == "web"
        decided_at = datetime.fromisoformat(final["decided_at"])
        lag = (heard_at - decided_at).total_seconds()
        print(f"long-poll lag after the decision: {lag * 1000:.1f} ms")
        assert lag < 0.2, f"the long-poll answered {lag:.3f} s after the decision"

    verify = subprocess.run(
        [str(SIGNOFF), "audit", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "audit chain OK" in verify.stdout

    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert process.wait(timeout=30) == 0
    assert time.monotonic() - started < 15
