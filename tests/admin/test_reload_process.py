"""Live reload on the real `signoff serve` process: when the file changes, and on SIGHUP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from bot.reload import TEST_POLL_ENV
from tests.admin.serving import SIGNOFF, free_port, start_serve
from tests.waiting import wait_for

CONFIG = """\
version: 1
server: {listen: "127.0.0.1:@PORT@", public_url: "http://127.0.0.1:@PORT@"}
database: {url: "sqlite:///@DB@"}
people: {alice: {}, bob: {}}
agents: {deploy-bot: {}}
policies:
@POLICIES@  - name: default
    levels: [{approvers: [alice], notify: [web], timeout: 30m}]
"""
DEPLOYS = """\
  - name: deploys
    match: {action: "deploy.*"}
    levels: [{approvers: [bob], notify: [web], timeout: 10m}]
"""
BROKEN = """\
  - name: deploys
    match: {action: "deploy.*"}
    levels: [{approvers: [bob], notify: [web], timeout: 10m, remind_every: 1h}]
"""


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.db = tmp_path / "reload.db"
        self.config = tmp_path / "signoff.yaml"
        self.key = ""
        self.asked = 0

    def write(self, policies: str = "") -> str:
        text = (
            CONFIG.replace("@PORT@", str(self.port))
            .replace("@DB@", str(self.db))
            .replace("@POLICIES@", policies)
        )
        self.config.write_text(text, encoding="utf-8")
        return hashlib.sha256(text.encode()).hexdigest()

    async def prepare(self) -> None:
        self.write()
        store = SqlStore(f"sqlite:///{self.db}")
        await store.migrate()
        self.key = await AccessStore(store, SystemClock()).create_agent_key("deploy-bot")
        await store.close()

    async def create(self, base: str) -> dict[str, Any]:
        """A new request: each ask has a payload of its own (a counter param)."""
        self.asked += 1
        async with httpx.AsyncClient(base_url=base, trust_env=False) as agent:
            response = await agent.post(
                "/v1/approvals",
                headers={"Authorization": f"Bearer {self.key}"},
                json={"action": "deploy.web", "title": "Deploy", "params": {"n": self.asked}},
            )
        assert response.status_code == 201, response.text
        return response.json()

    async def config_entries(self) -> list[dict[str, Any]]:
        store = SqlStore(f"sqlite:///{self.db}")
        try:
            async with store.read() as reader:
                entries = await reader.audit_entries()
        finally:
            await store.close()
        return [
            {"kind": e.kind, **json.loads(e.data)}
            for e in entries
            if e.kind in ("config_loaded", "config_rejected")
        ]


async def readiness(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        return (await client.get("/readyz")).json()


async def test_editing_the_file_reloads_the_running_server(tmp_path):
    setup = Setup(tmp_path)
    await setup.prepare()
    served = await start_serve(setup.config, tmp_path, setup.port)
    try:
        assert (await setup.create(served.base))["policy"] == "default"

        # A broken edit: refused with file and line, the old config keeps serving.
        setup.write(BROKEN)
        where = f"{setup.config}:9: policies[0].levels[0].remind_every"

        async def refused():
            return (await readiness(served.base))["details"].get("config", {}).get("problems")

        problems = await wait_for(refused, within=15)
        assert problems[0].startswith(where)
        assert where in served.stderr.read_text()
        assert (await setup.create(served.base))["policy"] == "default"
        status = subprocess.run(
            [str(SIGNOFF), "status", "--json", "--config", str(setup.config)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "SIGNOFF_CONFIG"},
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["config_problems"][0].startswith(where)  # the file as it is now
        assert report["last_config_rejection"]["problems"][0].startswith(where)
        assert report["server"]["details"]["config"]["status"] == "rejected"

        # A valid edit: applied without a restart, the next request gets the new policy.
        sha = setup.write(DEPLOYS)

        async def loaded():
            last = (await setup.config_entries())[-1]
            return last["kind"] == "config_loaded" and last["sha256"] == sha and last

        entry = await wait_for(loaded, within=15)
        assert entry["reason"] == "file changed"
        assert (await setup.create(served.base))["policy"] == "deploys"
        assert "config" not in (await readiness(served.base))["details"]
        assert served.stop() == 0
    finally:
        served.kill()
    kinds = [entry["kind"] for entry in await setup.config_entries()]
    assert kinds == ["config_loaded", "config_rejected", "config_loaded"]


async def test_sighup_reloads_the_running_server(tmp_path):
    setup = Setup(tmp_path)
    await setup.prepare()
    # Watching the file is slowed to once an hour: only the signal can do it here.
    served = await start_serve(setup.config, tmp_path, setup.port, env={TEST_POLL_ENV: "3600"})
    try:
        assert (await setup.create(served.base))["policy"] == "default"
        sha = setup.write(DEPLOYS)
        served.process.send_signal(signal.SIGHUP)

        async def loaded():
            last = (await setup.config_entries())[-1]
            return last["sha256"] == sha and last

        entry = await wait_for(loaded, within=15)
        assert entry["kind"] == "config_loaded"
        assert entry["reason"] == "SIGHUP"
        assert served.process.poll() is None  # SIGHUP reloads; it does not stop signoff
        assert (await setup.create(served.base))["policy"] == "deploys"
        assert served.stop() == 0
    finally:
        served.kill()
    startup = (await setup.config_entries())[0]
    assert startup["kind"] == "config_loaded"
    assert startup["sha256"] != sha  # the first file's hash, recorded at start
