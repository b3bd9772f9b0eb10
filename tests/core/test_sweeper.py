"""Deadlines applied by the sweeper: reminders, escalations, timeouts, restarts, downtime."""

from datetime import timedelta

from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.policy import Level, Policy, PolicySet, TimeoutOutcome
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from tests.fakes.recording import RecordingAdapter

MIN = timedelta(minutes=1)


async def create(service, action="db.migrate", params=None, **extra):
    outcome = await service.create(
        CreateCommand(
            agent="deploy-bot",
            action=action,
            title="t",
            params={"env": "prod"} if params is None else params,
            **extra,
        )
    )
    return outcome.request


async def audit_kinds(store, request_id):
    async with store.read() as reader:
        return [e.kind for e in await reader.audit_entries(request_id=request_id)]


async def test_reminders_then_escalation_then_timeout(service, store, clock):
    request = await create(service)
    clock.advance(5 * MIN)
    assert await service.process_due() == 1
    clock.advance(5 * MIN)
    assert await service.process_due() == 1
    clock.advance(4 * MIN)
    assert await service.process_due() == 0  # the next reminder would coincide with escalation
    clock.advance(1 * MIN)
    assert await service.process_due() == 1
    escalated = await service.get(request.id)
    assert escalated.level == 1
    assert escalated.status is Status.PENDING
    clock.advance(60 * MIN)
    assert await service.process_due() == 1
    final = await service.get(request.id)
    assert final.status is Status.DENIED
    assert final.decision.by == "timeout"
    assert await audit_kinds(store, request.id) == [
        "created",
        "reminded",
        "reminded",
        "escalated",
        "decided",
    ]


async def test_nothing_happens_before_its_time(service, clock):
    request = await create(service)
    clock.advance(5 * MIN - timedelta(milliseconds=1))
    assert await service.process_due() == 0
    assert (await service.get(request.id)).version == request.version


async def test_escalation_lets_the_next_level_vote_and_dms_them(service, store, clock):
    request = await create(service)
    carol = VoteCommand(request.id, "discord", "200003", Verdict.APPROVE)
    assert (await service.vote(carol)).code.value == "not_an_approver"
    clock.advance(15 * MIN)
    await service.process_due()
    assert (await service.vote(carol)).request.approvals() == {"carol"}
    discord = RecordingAdapter("discord")
    slack = RecordingAdapter("slack")
    telegram = RecordingAdapter("telegram")
    await OutboxDispatcher(
        store, {"discord": discord, "slack": slack, "telegram": telegram}, clock
    ).drain()
    assert ("send", "discord:user:200003") in discord.kinds()
    # The first level's cards were told where the request went.
    notes = [c.card.note for c in slack.calls if c.kind == "edit"]
    assert any(note and "Escalated to level 1: carol" in note for note in notes)


async def test_on_timeout_expire_and_approve(service, clock):
    expiring = await create(service, action="cache.flush", params={})
    lenient = await create(service, action="docs.publish", params={})
    clock.advance(10 * MIN)
    assert await service.process_due() == 2
    assert (await service.get(expiring.id)).status is Status.EXPIRED
    approved = await service.get(lenient.id)
    assert approved.status is Status.APPROVED
    assert approved.decision.by == "timeout"


async def test_restart_keeps_pending_deadlines(store, rules, clock):
    first = ApprovalService(store, rules, clock)
    request = await create(first)
    other = await create(first, action="deploy.web", params={})
    await store.close()  # the process goes away

    reopened = SqlStore(store.url)
    try:
        second = ApprovalService(reopened, rules, clock)
        assert await reopened.next_due_at() == request.next_due_at
        clock.advance(30 * MIN)
        assert await second.process_due() == 2
        denied = await second.get(other.id)
        assert denied is not None
        assert denied.status is Status.DENIED
        escalated = await second.get(request.id)
        assert escalated is not None
        assert escalated.level == 1
    finally:
        await reopened.close()


async def test_downtime_past_every_step_gives_exactly_one_action(service, store, clock):
    request = await create(service)
    clock.advance(timedelta(hours=5))  # reminders, escalation and deadline all missed
    assert await service.process_due() == 1
    assert await service.process_due() == 0
    assert await audit_kinds(store, request.id) == ["created", "decided"]
    assert (await service.get(request.id)).status is Status.DENIED


async def test_downtime_past_a_level_escalates_once(service, store, clock):
    request = await create(service)
    clock.advance(20 * MIN)
    assert await service.process_due() == 1
    assert await service.process_due() == 0
    assert await audit_kinds(store, request.id) == ["created", "escalated"]


async def test_late_click_on_expired_request_says_expired(service, clock):
    request = await create(service, action="cache.flush", params={})
    clock.advance(11 * MIN)
    await service.process_due()
    late = await service.vote(VoteCommand(request.id, "slack", "U0ALICE", Verdict.APPROVE))
    assert late.message.startswith("already expired by timeout")


async def test_sweeper_batches(service, clock):
    for n in range(7):
        await create(service, action="deploy.web", params={"n": n})
    clock.advance(31 * MIN)
    assert await service.process_due(limit=3) == 3
    assert await service.process_due(limit=3) == 3
    assert await service.process_due(limit=3) == 1
    assert await service.store.next_due_at() is None


async def test_decided_requests_leave_the_sweep(service, clock):
    request = await create(service, action="deploy.web", params={})
    await service.vote(VoteCommand(request.id, "slack", "U0ALICE", Verdict.APPROVE))
    clock.advance(timedelta(days=1))
    assert await service.process_due() == 0


async def test_late_click_before_the_sweep_meets_the_overdue_timeout(service, store, clock):
    """A click that arrives after the deadline but before the sweeper ran loses to it."""
    request = await create(service, action="deploy.web", params={})
    clock.advance(3 * 60 * MIN)  # long past the 30 min deadline; no sweep has run
    late = await service.vote(VoteCommand(request.id, "slack", "U0ALICE", Verdict.APPROVE))
    assert late.status is Status.DENIED
    assert late.by == "timeout"
    assert await audit_kinds(store, request.id) == ["created", "decided", "refused"]
    assert await service.process_due() == 0


async def test_late_cancel_before_the_sweep_meets_the_overdue_timeout(service, clock):
    request = await create(service, action="cache.flush", params={})
    clock.advance(11 * MIN)
    outcome = await service.cancel(request.id, "deploy-bot")
    assert outcome.status is Status.EXPIRED


async def test_next_level_may_vote_once_its_time_came_even_before_the_sweep(service, clock):
    request = await create(service)
    clock.advance(16 * MIN)  # level 2 started a minute ago; no sweep yet
    outcome = await service.vote(VoteCommand(request.id, "discord", "200003", Verdict.APPROVE))
    assert outcome.request.level == 1
    assert outcome.request.approvals() == {"carol"}


async def test_a_failing_deadline_step_does_not_block_the_others(service, clock, monkeypatch):
    broken = await create(service, action="deploy.web", params={})
    fine = await create(service, action="cache.flush", params={})
    original = service._apply_steps

    def fail_for_one(tx, requests, now):
        if any(request.id == broken.id for request in requests):
            raise RuntimeError("simulated bug")
        return original(tx, requests, now)

    monkeypatch.setattr(service, "_apply_steps", fail_for_one)
    clock.advance(31 * MIN)
    assert await service.process_due() == 2
    assert (await service.get(fine.id)).status is Status.EXPIRED
    postponed = await service.get(broken.id)
    assert postponed.status is Status.PENDING
    assert postponed.next_due_at == clock.now() + timedelta(minutes=1)
    assert await service.process_due() == 0  # not retried before its new due time


async def test_timeout_approval_names_no_human_deciders(store, rules, clock):
    lenient_pair = Policy(
        name="lenient-pair",
        quorum=2,
        levels=(Level(("alice", "bob"), ("web",), timedelta(minutes=10)),),
        on_timeout=TimeoutOutcome.APPROVE,
    )
    service = ApprovalService(store, Rules(PolicySet((lenient_pair,)), rules.directory), clock)
    request = await create(service, action="docs.publish", params={})
    await service.vote(VoteCommand(request.id, "slack", "U0ALICE", Verdict.APPROVE))
    clock.advance(10 * MIN)
    await service.process_due()
    final = await service.get(request.id)
    assert final is not None
    assert final.status is Status.APPROVED
    assert final.decision is not None
    assert final.decision.by == "timeout"
    async with store.read() as reader:
        entries = await reader.audit_entries(request_id=request.id)
    [decided] = [entry for entry in entries if entry.kind == "decided"]
    assert '"deciders":["timeout"]' in decided.data
