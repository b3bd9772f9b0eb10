"""``signoff grants list|revoke`` and the live grants in ``signoff status``, run as real
processes on the database an in-process service gave a grant in."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from approvals.clock import SystemClock
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Applied, Created
from approvals.service import ApprovalService
from approvals.store import SqlStore
from bot.app import rules_from
from config import load_config
from tests.app.test_cli_agents import signoff

CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:9", public_url: "http://127.0.0.1:9"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
policies:
  - name: migrations
    match: {{action: "db.*"}}
    grants: {{max: 1h, match: [params.table]}}
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""
VACUUM = CreateCommand(
    agent="deploy-bot", action="db.vacuum", title="Vacuum", params={"table": "users"}
)


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "signoff.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "signoff.db"), encoding="utf-8")
    return path


async def with_service(config_file: Path, work):
    config = load_config(config_file)
    store = SqlStore(config.settings.database.url)
    await store.migrate()
    try:
        return await work(ApprovalService(store, rules_from(config), SystemClock()))
    finally:
        await store.close()


async def give_grant(service: ApprovalService) -> str:
    asked = await service.create(VACUUM)
    assert isinstance(asked, Created)
    vote = VoteCommand(
        asked.request.id, "web", "alice", Verdict.APPROVE, grant_for=timedelta(minutes=15)
    )
    outcome = await service.vote(vote)
    assert isinstance(outcome, Applied)
    assert outcome.request.decision is not None
    assert outcome.request.decision.grant is not None
    return outcome.request.decision.grant.id


async def ask_again(service: ApprovalService) -> Status:
    again = await service.create(VACUUM)
    assert isinstance(again, Created)
    return again.request.status


async def test_grants_are_listed_shown_in_status_and_revoked(config_file):
    grant_id = await with_service(config_file, give_grant)

    listed = signoff("grants", "list", "--json", "--config", str(config_file))
    assert listed.returncode == 0, listed.stderr
    [grant] = json.loads(listed.stdout)["grants"]
    assert grant["id"] == grant_id
    assert grant["given_by"] == ["alice"]
    assert grant["matched"] == {"params.table": "users"}
    table = signoff("grants", "list", "--config", str(config_file))
    assert f'{grant_id}  policy migrations: deploy-bot may db.vacuum with params.table="users"' in (
        table.stdout
    )
    status = signoff("status", "--json", "--config", str(config_file))
    assert status.returncode == 0, status.stderr
    assert [g["id"] for g in json.loads(status.stdout)["grants"]] == [grant_id]
    assert "live grants: 1" in signoff("status", "--config", str(config_file)).stdout

    revoked = signoff(
        "grants",
        "revoke",
        grant_id,
        "--reason",
        "done",
        "--by",
        "ops",
        "--config",
        str(config_file),
    )

    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked grant {grant_id}" in revoked.stdout
    assert await with_service(config_file, ask_again) is Status.PENDING
    after = signoff("grants", "list", "--config", str(config_file))
    assert after.stdout.strip() == "no live grants"
    again = signoff("grants", "revoke", grant_id, "--config", str(config_file))
    assert again.returncode == 0
    assert "had already ended" in again.stdout


def test_revoking_an_unknown_grant_exits_1(config_file):
    result = signoff("grants", "revoke", "g_unknown", "--config", str(config_file))
    assert result.returncode == 1
    assert "no grant 'g_unknown'" in result.stdout
