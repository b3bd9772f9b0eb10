"""Long-poll waiters on one SQLite process: woken by the service itself, re-checked rarely."""

from __future__ import annotations

import asyncio

from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Created
from bot.waiters import NOTIFIED_RECHECK_SECONDS, RequestWaiters
from tests.waiting import wait_for


async def _now(value: bool) -> bool:
    return value


async def test_a_decision_wakes_the_waiter_without_waiting_for_a_recheck(sqlite_service):
    waiters = RequestWaiters(sqlite_service)
    sqlite_service.subscribe(waiters.on_change)
    assert waiters.recheck_interval == NOTIFIED_RECHECK_SECONDS
    created = await sqlite_service.create(
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy")
    )
    assert isinstance(created, Created)
    waiting = asyncio.create_task(waiters.wait_final(created.request.id, within=30))
    await wait_for(lambda: _now(waiters.waiting == 1), within=5)

    await sqlite_service.vote(VoteCommand(created.request.id, "slack", "U0ALICE", Verdict.APPROVE))

    # Well inside one re-check interval: only the service's own announcement can do this.
    answer = await asyncio.wait_for(waiting, timeout=NOTIFIED_RECHECK_SECONDS / 2)
    assert answer is not None
    assert answer.status is Status.APPROVED
