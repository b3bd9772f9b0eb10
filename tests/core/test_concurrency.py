"""Racing clicks: many concurrent votes on one request produce exactly one decision."""

import asyncio
from datetime import timedelta

from approvals.directory import Directory, Person
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import AlreadyDecided, Applied, Created
from approvals.policy import Level, Policy, PolicySet
from approvals.service import ApprovalService, Rules

PLATFORMS = ("slack", "telegram", "discord")


def crowd_rules(people: int, quorum: int) -> Rules:
    names = [f"p{i}" for i in range(people)]
    directory = Directory(
        people={
            name: Person(name, {platform: f"{platform}-{name}" for platform in PLATFORMS})
            for name in names
        },
        platforms=frozenset(PLATFORMS),
    )
    policy = Policy(
        name="crowd",
        quorum=quorum,
        levels=(Level(tuple(names), ("web",), timedelta(hours=1)),),
    )
    return Rules(PolicySet((policy,)), directory)


async def race(service, request_id, votes):
    return await asyncio.gather(*(service.vote(v) for v in votes))


async def test_fifty_concurrent_approvals_make_one_decision(store, clock):
    service = ApprovalService(store, crowd_rules(50, 1), clock)
    created = await service.create(CreateCommand(agent="a", action="x", title="t"))
    assert isinstance(created, Created), created
    request = created.request
    votes = [
        VoteCommand(request.id, PLATFORMS[i % 3], f"{PLATFORMS[i % 3]}-p{i}", Verdict.APPROVE)
        for i in range(50)
    ]
    outcomes = await race(service, request.id, votes)
    applied = [o for o in outcomes if isinstance(o, Applied)]
    assert len(applied) == 1
    assert all(isinstance(o, AlreadyDecided) for o in outcomes if o not in applied)
    final = await service.get(request.id)
    assert final is not None
    assert final.status is Status.APPROVED
    assert len(final.votes) == 1
    async with store.read() as reader:
        kinds = [e.kind for e in await reader.audit_entries(request_id=request.id)]
    assert kinds.count("decided") == 1
    assert kinds.count("refused") == 49
    assert (await store.verify_audit()).ok


async def test_twenty_people_clicking_on_three_platforms_reach_quorum_once(store, clock):
    """RELIABILITY L8: 50 clicks by 20 people; the same person on two platforms counts once."""
    service = ApprovalService(store, crowd_rules(20, 3), clock)
    created = await service.create(CreateCommand(agent="a", action="x", title="t"))
    assert isinstance(created, Created), created
    request = created.request
    votes = [
        VoteCommand(request.id, PLATFORMS[i % 3], f"{PLATFORMS[i % 3]}-p{i % 20}", Verdict.APPROVE)
        for i in range(50)
    ]
    outcomes = await race(service, request.id, votes)
    decisions = [o for o in outcomes if isinstance(o, Applied) and o.request.status.is_final]
    counted = [o for o in outcomes if isinstance(o, Applied)]
    assert len(decisions) == 1
    assert len(counted) == 3
    final = await service.get(request.id)
    assert final is not None
    assert final.status is Status.APPROVED
    assert len({v.person for v in final.votes}) == len(final.votes) == 3


async def test_concurrent_deny_and_approvals_make_one_decision(store, clock):
    service = ApprovalService(store, crowd_rules(10, 2), clock)
    created = await service.create(CreateCommand(agent="a", action="x", title="t"))
    assert isinstance(created, Created), created
    request = created.request
    votes = [
        VoteCommand(request.id, "slack", f"slack-p{i}", Verdict.DENY if i == 5 else Verdict.APPROVE)
        for i in range(10)
    ]
    outcomes = await race(service, request.id, votes)
    final = await service.get(request.id)
    assert final is not None
    assert final.status in (Status.APPROVED, Status.DENIED)
    assert sum(1 for o in outcomes if isinstance(o, Applied) and o.request.status.is_final) == 1
