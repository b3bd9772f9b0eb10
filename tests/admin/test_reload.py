"""Live config reload in a running application: what changes at once and what does not."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter

from approvals.clock import ManualClock
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Applied, Created, NotAllowed, RefusalCode
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.reload import SIGHUP_REASON, ConfigReloader
from bot.runtime import Runtime
from config import load_config
from tests.fakes.recording import RecordingAdapter
from tests.waiting import wait_for

BASE = """\
version: 1
database: {url: "sqlite:///@DB@"}
people: {alice: {}, bob: {}, carol: {}}
agents:
  deploy-bot: {allow: ["deploy.*", "db.*"]}
policies:
@POLICIES@"""


def config_text(policies: str = "") -> str:
    return BASE.replace("@POLICIES@", policies or DEFAULT_POLICY)


DEFAULT_POLICY = """\
  - name: default
    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]
"""


@dataclass
class Harness:
    runtime: Runtime
    reloader: ConfigReloader
    path: Path
    client: httpx.AsyncClient
    clock: ManualClock
    db: Path
    key: str = ""

    def write(self, text: str) -> str:
        self.path.write_text(text.replace("@DB@", str(self.db)), encoding="utf-8")
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    async def create(self, action: str = "deploy.web", **extra):
        outcome = await self.runtime.service.create(
            CreateCommand(agent="deploy-bot", action=action, title=action, **extra)
        )
        assert isinstance(outcome, Created), outcome
        return outcome.request

    async def audit_kinds(self) -> list[tuple[str, str]]:
        async with self.runtime.store.read() as reader:
            return [(e.kind, e.data) for e in await reader.audit_entries()]

    async def last_audit(self, kind: str) -> str:
        """The data of the newest audit entry of ``kind``."""
        return next(data for k, data in reversed(await self.audit_kinds()) if k == kind)


async def start_harness(
    tmp_path: Path, text: str, *, options: AppOptions | None = None, environ=None, factory=None
) -> Harness:
    db = tmp_path / "reload.db"
    path = tmp_path / "signoff.yaml"
    path.write_text(text.replace("@DB@", str(db)), encoding="utf-8")
    clock = ManualClock()
    config = load_config(path, environ=environ)
    runtime = build_runtime(config, options or AppOptions(clock=clock, web_inbox=False))
    app = build_http_app(runtime)
    await runtime.start()
    extra = {"build_adapters": factory} if factory else {}
    reloader = ConfigReloader(runtime, str(path), poll_interval=3600, environ=environ, **extra)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    harness = Harness(runtime, reloader, path, client, clock, db)
    harness.key = await runtime.access.create_agent_key("deploy-bot")
    return harness


@pytest.fixture
async def harness(tmp_path) -> AsyncIterator[Harness]:
    started = await start_harness(tmp_path, config_text(DEFAULT_POLICY))
    yield started
    await started.client.aclose()
    await started.runtime.stop()


async def test_a_valid_change_routes_the_next_request_without_restart(harness):
    before = await harness.create(params={"n": 1})
    assert before.policy.name == "default"

    sha = harness.write(
        config_text(
            """\
  - name: deploys
    match: {action: "deploy.*"}
    levels: [{approvers: [carol], notify: [web], timeout: 10m}]
"""
            + DEFAULT_POLICY,
        ).replace('allow: ["deploy.*", "db.*"]', 'allow: ["deploy.*"]')
    )
    result = await harness.reloader.reload(SIGHUP_REASON)

    assert result is not None
    assert result.applied
    assert result.sha256 == sha
    after = await harness.create(params={"n": 2})
    assert after.policy.name == "deploys"
    assert after.policy.levels[0].approvers == ("carol",)
    assert (await harness.runtime.service.get(before.id)).policy.name == "default"
    data = await harness.last_audit("config_loaded")
    assert f'"sha256":"{sha}"' in data
    assert '"reason":"SIGHUP"' in data
    # The agent API follows too: db.* is no longer allowed for deploy-bot.
    refused = await harness.client.post(
        "/v1/approvals",
        headers={"Authorization": f"Bearer {harness.key}"},
        json={"action": "db.migrate", "title": "Migrate"},
    )
    assert refused.status_code == 403, refused.text


async def test_an_invalid_change_keeps_the_old_config_and_reports_file_and_line(harness, caplog):
    rules = harness.runtime.service.rules
    broken = config_text(
        """\
  - name: default
    levels: [{approvers: [alice, bob], notify: [web], timeout: soon}]
""",
    )
    bad_sha = harness.write(broken)

    with caplog.at_level(logging.ERROR, logger="bot.reload"):
        result = await harness.reloader.reload(SIGHUP_REASON)

    where = f"{harness.path}:8: policies[0].levels[0].timeout"
    assert result is not None
    assert not result.applied
    assert result.problems[0].startswith(where)
    assert where in caplog.text
    assert harness.runtime.service.rules is rules
    assert (await harness.create()).policy.name == "default"
    data = await harness.last_audit("config_rejected")
    assert where in data
    assert bad_sha in data
    ready = (await harness.client.get("/readyz")).json()
    assert ready["status"] == "ready"  # still serving, on the previous config
    assert ready["details"]["config"]["status"] == "rejected"
    assert ready["details"]["config"]["problems"][0].startswith(where)

    harness.write(config_text(DEFAULT_POLICY))
    fixed = await harness.reloader.reload(SIGHUP_REASON)
    assert fixed is not None
    assert fixed.applied
    assert "config" not in (await harness.client.get("/readyz")).json()["details"]


async def test_a_person_removed_from_config_can_no_longer_vote(harness):
    request = await harness.create()

    harness.write(
        config_text(DEFAULT_POLICY).replace("bob: {}, ", "").replace("[alice, bob]", "[alice]")
    )
    assert (await harness.reloader.reload(SIGHUP_REASON)).applied

    refused = await harness.runtime.service.vote(
        VoteCommand(request.id, "web", "bob", Verdict.APPROVE)
    )
    assert isinstance(refused, NotAllowed)
    assert refused.code is RefusalCode.UNKNOWN_IDENTITY
    assert (await harness.runtime.service.get(request.id)).status is Status.PENDING
    kind, data = (await harness.audit_kinds())[-1]
    assert (kind, '"code":"unknown_identity"' in data) == ("refused", True)
    approved = await harness.runtime.service.vote(
        VoteCommand(request.id, "web", "alice", Verdict.APPROVE)
    )
    assert isinstance(approved, Applied)
    assert approved.request.status is Status.APPROVED


async def test_a_person_left_in_people_but_taken_out_of_the_policy_cannot_vote(harness):
    request = await harness.create()

    harness.write(config_text(DEFAULT_POLICY.replace("[alice, bob]", "[alice]")))
    assert (await harness.reloader.reload(SIGHUP_REASON)).applied

    refused = await harness.runtime.service.vote(
        VoteCommand(request.id, "web", "bob", Verdict.APPROVE)
    )
    assert isinstance(refused, NotAllowed)
    assert refused.code is RefusalCode.NOT_AN_APPROVER


async def test_a_pending_request_keeps_its_policy_snapshot(harness):
    pending = await harness.create(params={"n": 1})

    harness.write(
        config_text(
            """\
  - name: default
    quorum: 2
    require_reason: true
    levels: [{approvers: [alice, bob, carol], notify: [web], timeout: 5m}]
""",
        )
    )
    assert (await harness.reloader.reload(SIGHUP_REASON)).applied
    fresh = await harness.create(params={"n": 2})

    stored = await harness.runtime.service.get(pending.id)
    assert stored.policy == pending.policy  # quorum 1, 30 minutes, alice and bob
    assert stored.deadline == pending.deadline
    assert fresh.policy.quorum == 2
    assert fresh.deadline - fresh.created_at == fresh.policy.levels[0].timeout
    one = await harness.runtime.service.vote(
        VoteCommand(pending.id, "web", "alice", Verdict.APPROVE)
    )
    assert one.request.status is Status.APPROVED  # the snapshot's quorum of 1
    other = await harness.runtime.service.vote(
        VoteCommand(fresh.id, "web", "alice", Verdict.APPROVE)
    )
    assert other.request.status is Status.PENDING  # the new quorum of 2


async def test_an_unchanged_file_on_sighup_changes_nothing(harness):
    entries = len(await harness.audit_kinds())

    result = await harness.reloader.reload(SIGHUP_REASON)

    assert result is not None
    assert result.unchanged
    assert len(await harness.audit_kinds()) == entries


async def test_the_watcher_applies_a_changed_file_by_itself(tmp_path):
    started = await start_harness(tmp_path, config_text(DEFAULT_POLICY))
    watcher = ConfigReloader(started.runtime, str(started.path), poll_interval=0.05)
    await watcher.start()
    try:
        started.write(config_text(DEFAULT_POLICY.replace("timeout: 30m", "timeout: 20m")))

        async def reloaded():
            kinds = [kind for kind, _data in await started.audit_kinds()]
            return kinds.count("config_loaded") == 2

        await wait_for(reloaded, within=10)
        assert '"reason":"file changed"' in await started.last_audit("config_loaded")
        request = await started.create()
        assert request.policy.levels[0].timeout.total_seconds() == 20 * 60
    finally:
        await watcher.stop()
        await started.client.aclose()
        await started.runtime.stop()


# --- adapters ----------------------------------------------------------------------------


@dataclass
class TrackedAdapter(RecordingAdapter):
    """A recording adapter that remembers its settings, its lifecycle, and serves one route."""

    label: str = ""
    lifecycle: list[str] = field(default_factory=list)

    async def start(self, sink):
        self.lifecycle.append("started")
        await super().start(sink)

    async def stop(self):
        self.lifecycle.append("stopped")

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get(f"/fake/{self.platform}")
        async def which() -> dict[str, str]:
            return {"label": self.label}

        return router


def tracked_adapters(config, _public_url):
    platforms = config.settings.platforms
    made = {}
    for name in ("slack", "telegram"):
        settings = getattr(platforms, name)
        if settings is not None:
            made[name] = TrackedAdapter(
                name, label=f"{settings.bot_token.get_secret_value()} {settings.api_url}"
            )
    return made


PLATFORMS = """\
version: 1
database: {url: "sqlite:///@DB@"}
people: {alice: {slack: U0ALICE, telegram: 100001}}
channels: {ops: {slack: C0OPS, telegram: -1001}}
platforms:
  slack: {bot_token: "${SLACK_TOKEN}", signing_secret: "${SLACK_SECRET}"}
  telegram: {bot_token: "${TELEGRAM_TOKEN}", api_url: "http://127.0.0.1:9/bot"}
  web: {enabled: false}
policies:
  - name: default
    levels: [{approvers: [alice], notify: [ops], timeout: 30m}]
"""
ENVIRON = {
    "SLACK_TOKEN": "xoxb-first",
    "SLACK_TOKEN_2": "xoxb-second",
    "SLACK_SECRET": "s",
    "TELEGRAM_TOKEN": "1:t",
}


async def test_changed_platform_settings_restart_only_that_adapter(tmp_path):
    first_slack = TrackedAdapter("slack", label="xoxb-first https://slack.com/api/")
    first_telegram = TrackedAdapter("telegram", label="1:t http://127.0.0.1:9/bot")
    options = AppOptions(
        clock=ManualClock(),
        web_inbox=False,
        adapters={"slack": first_slack, "telegram": first_telegram},
    )
    started = await start_harness(
        tmp_path, PLATFORMS, options=options, environ=ENVIRON, factory=tracked_adapters
    )
    try:
        assert (await started.client.get("/fake/slack")).json() == {"label": first_slack.label}

        started.write(PLATFORMS.replace("${SLACK_TOKEN}", "${SLACK_TOKEN_2}"))
        result = await started.reloader.reload(SIGHUP_REASON)
        assert result is not None

        assert result.adapters_restarted == ("slack",)
        slack = started.runtime.adapters["slack"]
        assert isinstance(slack, TrackedAdapter)
        assert slack is not first_slack
        assert slack.label == "xoxb-second https://slack.com/api/"
        assert first_slack.lifecycle == ["started", "stopped"]
        assert slack.lifecycle == ["started"]
        assert started.runtime.adapters["telegram"] is first_telegram
        assert first_telegram.lifecycle == ["started"]
        assert (await started.client.get("/fake/slack")).json() == {"label": slack.label}
        spec = (await started.client.get("/openapi.json")).json()
        assert "/fake/slack" in spec["paths"]

        request = await started.create("deploy.web")

        async def posted_by_the_new_adapter():
            return [c.destination for c in slack.calls if c.kind == "send"]

        assert await wait_for(posted_by_the_new_adapter) == ["slack:channel:C0OPS"]
        assert first_slack.calls == []
        assert request.id

        started.write(
            PLATFORMS.replace("${SLACK_TOKEN}", "${SLACK_TOKEN_2}").replace(
                "http://127.0.0.1:9/bot", "http://127.0.0.1:10/bot"
            )
        )
        second = await started.reloader.reload(SIGHUP_REASON)
        assert second is not None
        assert second.adapters_restarted == ("telegram",)
        assert started.runtime.adapters["slack"] is slack
        assert first_telegram.lifecycle == ["started", "stopped"]
    finally:
        await started.client.aclose()
        await started.runtime.stop()
