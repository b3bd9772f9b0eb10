"""An in-process signoff app on a temporary SQLite file, and an agent key for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.limits import RateLimit
from bot.runtime import Runtime
from config import load_config_text

APP_CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people:
  alice: {{}}
  bob: {{}}
  carol: {{}}
agents:
  deploy-bot: {{allow: ["deploy.*", "db.*"], max_open: {max_open}}}
  other-bot: {{}}
policies:
  - name: prod-db
    match: {{action: "db.*"}}
    quorum: 2
    require_reason: true
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 15m}}]
  - name: editable
    match: {{action: "deploy.scale"}}
    edits: allowed
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


@dataclass
class ApiHarness:
    runtime: Runtime
    client: httpx.AsyncClient
    key: str
    other_key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def create(self, **body) -> httpx.Response:
        payload = {"action": "deploy.web", "title": "Deploy web"} | body
        return await self.client.post("/v1/approvals", json=payload, headers=self.auth())


async def start_harness(
    tmp_path: Path, *, max_open: int = 50, per_agent: RateLimit | None = None, web: bool = False
) -> ApiHarness:
    config = load_config_text(
        APP_CONFIG.format(db=tmp_path / "api.db", max_open=max_open), "test.yaml"
    )
    options = AppOptions(web_inbox=web)
    if per_agent is not None:
        options = AppOptions(web_inbox=web, per_agent_limit=per_agent)
    runtime = build_runtime(config, options)
    app = build_http_app(runtime)
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")
    key = await runtime.access.create_agent_key("deploy-bot")
    other = await runtime.access.create_agent_key("other-bot")
    return ApiHarness(runtime, client, key, other)


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[ApiHarness]:
    harness = await start_harness(tmp_path)
    yield harness
    await harness.client.aclose()
    await harness.runtime.stop()
