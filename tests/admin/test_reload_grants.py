"""A config reload ends the time-boxed grants it no longer supports, audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from approvals.machine import Status
from approvals.model import Verdict, VoteCommand
from approvals.outcomes import Applied
from bot.reload import SIGHUP_REASON
from tests.admin.test_reload import Harness, config_text, start_harness

GRANTING = """\
  - name: migrations
    match: {action: "db.*"}
    grants: {max: 1h}
    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]
  - name: default
    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]
"""


@pytest.fixture
async def harness(tmp_path) -> AsyncIterator[Harness]:
    started = await start_harness(tmp_path, config_text(GRANTING))
    yield started
    await started.client.aclose()
    await started.runtime.stop()


async def give_grant(harness: Harness) -> str:
    asked = await harness.create("db.migrate", params={"n": 42})
    outcome = await harness.runtime.service.vote(
        VoteCommand(asked.id, "web", "alice", Verdict.APPROVE, grant_for=timedelta(hours=1))
    )
    assert isinstance(outcome, Applied)
    assert outcome.request.decision is not None
    assert outcome.request.decision.grant is not None
    assert (await harness.create("db.migrate", params={"n": 42})).status is Status.APPROVED
    return outcome.request.decision.grant.id


async def test_a_reload_that_removes_the_giver_ends_the_grant(harness):
    grant_id = await give_grant(harness)

    harness.write(config_text(GRANTING.replace("approvers: [alice, bob]", "approvers: [bob]", 1)))
    result = await harness.reloader.reload(SIGHUP_REASON)

    assert result is not None
    assert result.applied
    assert await harness.runtime.service.live_grants() == []
    ended = json.loads(await harness.last_audit("grant_ended"))
    assert ended == {
        "grant": grant_id,
        "why": "config",
        "reason": "alice no longer approve(s) for policy migrations",
    }
    assert (await harness.create("db.migrate", params={"n": 42})).status is Status.PENDING


async def test_a_reload_that_keeps_the_giver_keeps_the_grant(harness):
    await give_grant(harness)

    harness.write(config_text(GRANTING.replace("timeout: 30m", "timeout: 45m", 1)))
    result = await harness.reloader.reload(SIGHUP_REASON)

    assert result is not None
    assert result.applied
    assert len(await harness.runtime.service.live_grants()) == 1
    assert (await harness.create("db.migrate", params={"n": 42})).status is Status.APPROVED
