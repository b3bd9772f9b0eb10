"""F4: the wall clock jumps (+1 h, -10 min); nothing times out before its time really passed.

"Early" is judged the way the people waiting judge it: a request given 30 minutes must not
time out (or be approved by ``on_timeout: approve``) before 30 minutes have really passed,
whatever the server's wall clock says. The service sees a step by comparing the wall clock
with elapsed time (:mod:`approvals.clocksteps`): a forward step moves the deadlines of the
requests pending from before it by the step; a backward step leaves them (they fall due late
by at most the step, never early) and moves queued deliveries' times so nothing freezes.

The service-level tests run on a :class:`~approvals.clock.SteppingClock`, on SQLite and
PostgreSQL; the last test steps the clock under the running application (the system clock
and APScheduler both see it) and checks the sweeper keeps sweeping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import apscheduler.schedulers.base
import pytest

import approvals.clock
from approvals.audit import AuditKind
from approvals.clock import SteppingClock
from approvals.directory import Destination, DestinationKind, Directory, Person
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Applied, Created
from approvals.policy import Level, Match, Policy, PolicySet, TimeoutOutcome
from approvals.service import ApprovalService, Rules
from bot.app import AppOptions, build_runtime
from config import load_config_text
from tests.fakes.recording import RecordingAdapter
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for
from tests.world import build_test_runtime, deliver_through

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
SWEEP = timedelta(seconds=1)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def rules() -> Rules:
    people = {
        "alice": Person("alice", {"slack": "U0ALICE"}),
        "bob": Person("bob", {"slack": "U0BOB"}),
        "carol": Person("carol", {"slack": "U0CAROL"}),
    }
    channels = {"ops-slack": (Destination("slack", DestinationKind.CHANNEL, "C0OPS"),)}
    directory = Directory(people=people, channels=channels, platforms=frozenset({"slack"}))
    policies = PolicySet(
        (
            Policy(
                name="approve-on-silence",
                match=Match(actions=("docs.*",)),
                levels=(Level(approvers=("alice", "bob"), notify=("web",), timeout=30 * MINUTE),),
                on_timeout=TimeoutOutcome.APPROVE,
            ),
            Policy(
                name="escalating",
                match=Match(actions=("db.*",)),
                levels=(
                    Level(approvers=("alice",), notify=("web",), timeout=15 * MINUTE),
                    Level(approvers=("carol",), notify=("web",), timeout=60 * MINUTE),
                ),
            ),
            Policy(
                name="default",
                levels=(
                    Level(approvers=("alice", "bob"), notify=("ops-slack",), timeout=30 * MINUTE),
                ),
            ),
        )
    )
    return Rules(policies=policies, directory=directory)


async def _create(service: ApprovalService, action: str) -> str:
    outcome = await service.create(CreateCommand(agent="a", action=action, title=action))
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


async def _status(service: ApprovalService, request_id: str) -> Status:
    request = await service.get(request_id)
    assert request is not None
    return request.status


async def _steps(store) -> list[dict[str, Any]]:
    async with store.read() as reader:
        return [
            json.loads(entry.data)
            for entry in await reader.audit_entries()
            if entry.kind == AuditKind.CLOCK_STEPPED
        ]


async def test_F4_a_one_hour_jump_forward_expires_nothing_early(service, store, clock):
    """F4 +1 h: 10 minutes in, the wall clock jumps an hour; every request still gets
    exactly its real time: the escalation at 15 real minutes, the auto-approval at 30."""
    silence = await _create(service, "docs.publish")
    escalating = await _create(service, "db.migrate")
    plain = await _create(service, "deploy.web")
    created = {rid: (await service.get(rid)) for rid in (silence, escalating, plain)}

    clock.advance(10 * MINUTE)
    assert await service.process_due() == 0
    clock.step(timedelta(hours=1))
    await service.process_due()
    assert [await _status(service, rid) for rid in created] == [Status.PENDING] * 3
    [step] = await _steps(store)
    assert (step["step_seconds"], step["requests_moved"]) == (3600.0, 3)
    moved = await service.get(silence)
    assert moved.deadline == created[silence].deadline + timedelta(hours=1)

    # A click just after another jump meets the request pending, not expired.
    clock.step(timedelta(hours=1))
    outcome = await service.vote(VoteCommand(plain, "slack", "U0ALICE", Verdict.APPROVE))
    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.APPROVED
    assert len(await _steps(store)) == 2

    clock.advance(5 * MINUTE - SECOND)  # 14:59 of real time
    await service.process_due()
    assert (await service.get(escalating)).level == 0
    clock.advance(SECOND)  # 15:00
    await service.process_due()
    assert (await service.get(escalating)).level == 1

    clock.advance(15 * MINUTE - SECOND)  # 29:59
    await service.process_due()
    assert await _status(service, silence) is Status.PENDING
    clock.advance(SECOND)  # 30:00
    await service.process_due()
    final = await service.get(silence)
    assert final.status is Status.APPROVED
    assert final.decision.by == "timeout"
    assert final.decided_at - final.created_at == 30 * MINUTE
    await check_invariants(
        store,
        now=clock.now(),
        sweep_interval=SWEEP,
        accepted=list(created),
        max_backoff=timedelta(days=1),
    )
    print("F4 +1 h: timed out after exactly 30 real minutes; escalated after exactly 15")


async def test_F4_ten_minutes_back_is_never_early_and_does_not_freeze_deliveries(
    runtime, service, store, clock
):
    """F4 -10 min: a request falls due late by at most the step, never early; the card
    channel paused by pacing just before the step is not frozen for ten minutes."""
    slack = RecordingAdapter("slack", min_send_interval=SECOND)
    dispatcher = deliver_through(runtime, {"slack": slack})
    waiting = await _create(service, "deploy.web")
    clicked = await _create(service, "deploy.api")
    assert await dispatcher.drain() == 1  # the second card waits for the channel's pacing
    clock.advance(SECOND)
    assert await dispatcher.drain() == 1

    clock.advance(5 * MINUTE)
    clock.step(-10 * MINUTE)
    await service.vote(VoteCommand(clicked, "slack", "U0ALICE", Verdict.APPROVE))
    [step] = await _steps(store)
    assert (step["step_seconds"], step["requests_moved"]) == (-600.0, 0)
    assert await dispatcher.drain() == 1, "the edit waited out the ten-minute step"
    assert slack.kinds()[-1] == ("edit", "slack:channel:C0OPS")

    clock.advance(25 * MINUTE - SECOND)  # 30 real minutes, less a second
    await service.process_due()
    assert await _status(service, waiting) is Status.PENDING
    clock.advance(10 * MINUTE + SECOND)  # the deadline on the old clock: 10 minutes late
    await service.process_due()
    assert await _status(service, waiting) is Status.DENIED
    await check_invariants(store, now=clock.now(), sweep_interval=SWEEP, accepted=[waiting])


async def test_F4_two_processes_that_see_the_same_jump_move_deadlines_once(
    service, store, rules, clock
):
    """F4: each process notices the step; the second finds it followed and moves nothing."""
    other_process = build_test_runtime(store, clock, rules).service
    request_id = await _create(service, "docs.publish")
    before = await service.get(request_id)
    clock.advance(MINUTE)
    clock.step(timedelta(hours=1))
    await service.process_due()
    await other_process.process_due()
    steps = await _steps(store)
    assert len(steps) == 1
    after = await service.get(request_id)
    assert after.deadline - before.deadline == timedelta(hours=1)
    assert after.status is Status.PENDING


async def test_F4_the_running_application_keeps_sweeping_after_the_clock_steps_back(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """F4 in the running application: the system clock (and so APScheduler's view of it)
    steps back ten minutes; the sweeper keeps its interval, and then a forward hour expires
    nothing early."""
    offset = timedelta(0)

    class SteppedDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + offset

    monkeypatch.setattr(approvals.clock, "datetime", SteppedDatetime)
    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", SteppedDatetime)
    config = load_config_text(
        f'version: 1\ndatabase: {{url: "sqlite:///{tmp_path / "f4.db"}"}}\n'
        "people: {alice: {}, bob: {}}\n"
        "policies:\n  - name: default\n"
        "    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]\n"
        "    on_timeout: approve\n",
        "signoff.yaml",
    )
    runtime = build_runtime(config, AppOptions(sweep_interval=0.2))
    await runtime.start()
    try:
        created = await runtime.service.create(CreateCommand(agent="a", action="x", title="t"))
        assert isinstance(created, Created), created
        request_id = created.request.id
        sweeps = runtime.scheduler.sweeps
        offset = -10 * MINUTE

        async def swept_three_more() -> bool:
            return runtime.scheduler.sweeps >= sweeps + 3

        await wait_for(swept_three_more, within=5)
        offset = timedelta(hours=1)
        sweeps = runtime.scheduler.sweeps
        await wait_for(swept_three_more, within=5)
        assert await _status(runtime.service, request_id) is Status.PENDING
        steps = [step["step_seconds"] for step in await _steps(runtime.store)]
        assert [round(s) for s in steps] == [-600, 4200]  # back 10 min, then to +1 h
        request = await runtime.service.get(request_id)
        assert request is not None
        assert request.deadline - request.created_at == 30 * MINUTE
        assert request.deadline > SteppedDatetime.now(UTC) + 29 * MINUTE
    finally:
        await runtime.stop()
