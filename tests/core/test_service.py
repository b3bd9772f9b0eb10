"""The approval service's rules: who may decide, quorum, four-eyes, reasons, cancel."""

from dataclasses import replace
from datetime import timedelta

import pytest

from approvals.clicks import Click
from approvals.directory import Directory
from approvals.machine import Event, Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import AlreadyDecided, Applied, Created, NotAllowed, NotFound, RefusalCode
from approvals.service import Rules

PROD = {"env": "prod"}


async def create(service, action="db.migrate", params=PROD, **extra):
    outcome = await service.create(
        CreateCommand(agent="deploy-bot", action=action, title="Migrate", params=params, **extra)
    )
    assert isinstance(outcome, Created), outcome
    return outcome.request


def vote(request_id, platform, identity, verdict=Verdict.APPROVE, reason=None):
    return VoteCommand(request_id, platform, identity, verdict, reason)


async def audit_kinds(store, request_id):
    async with store.read() as reader:
        return [e.kind for e in await reader.audit_entries(request_id=request_id)]


async def test_quorum_counts_distinct_persons_across_platforms(service):
    request = await create(service)
    first = await service.vote(vote(request.id, "slack", "U0ALICE"))
    assert isinstance(first, Applied)
    assert first.event is Event.VOTE
    assert first.request.status is Status.PENDING
    # alice again, from Telegram: one person, one vote.
    twice = await service.vote(vote(request.id, "telegram", "100001"))
    assert twice == NotAllowed(RefusalCode.ALREADY_VOTED, "alice has already voted")
    second = await service.vote(vote(request.id, "telegram", "100002"))
    assert isinstance(second, Applied)
    assert second.request.status is Status.APPROVED
    assert second.request.decision is not None
    assert second.request.decision.by == "bob"
    assert second.request.approvals() == {"alice", "bob"}


async def test_requester_can_never_decide_their_own_request(service, store):
    request = await create(service, requested_by="alice")
    for verdict in Verdict:
        outcome = await service.vote(vote(request.id, "slack", "U0ALICE", verdict, "no"))
        assert isinstance(outcome, NotAllowed)
        assert outcome.code is RefusalCode.REQUESTER
    assert (await service.get(request.id)).votes == ()
    assert await audit_kinds(store, request.id) == ["created", "refused", "refused"]


async def test_stranger_and_non_approver_are_refused(service):
    request = await create(service)
    stranger = await service.vote(vote(request.id, "slack", "U0NOBODY"))
    assert stranger.code is RefusalCode.UNKNOWN_IDENTITY
    # carol approves only from level 1 on.
    early = await service.vote(vote(request.id, "discord", "200003"))
    assert early.code is RefusalCode.NOT_AN_APPROVER
    # erin is a person, but no approver at all.
    erin = await service.vote(vote(request.id, "telegram", "100005"))
    assert erin.code is RefusalCode.NOT_AN_APPROVER


async def test_identity_is_matched_per_platform(service):
    request = await create(service)
    # alice's Slack id typed into the Telegram platform is nobody.
    outcome = await service.vote(vote(request.id, "telegram", "U0ALICE"))
    assert outcome.code is RefusalCode.UNKNOWN_IDENTITY


async def test_deny_needs_a_reason_when_the_policy_says_so(service):
    request = await create(service)
    bare = await service.vote(vote(request.id, "slack", "U0BOB", Verdict.DENY))
    assert bare.code is RefusalCode.REASON_REQUIRED
    blank = await service.vote(vote(request.id, "slack", "U0BOB", Verdict.DENY, "   "))
    assert blank.code is RefusalCode.REASON_REQUIRED
    denied = await service.vote(vote(request.id, "slack", "U0BOB", Verdict.DENY, "not now"))
    assert denied.request.status is Status.DENIED
    assert denied.request.decision.reason == "not now"


async def test_one_deny_decides_even_after_approvals(service):
    request = await create(service)
    await service.vote(vote(request.id, "slack", "U0ALICE"))
    denied = await service.vote(vote(request.id, "slack", "U0DAVE", Verdict.DENY, "risky"))
    assert denied.request.status is Status.DENIED
    assert denied.request.decision.by == "dave"


async def test_decided_request_answers_with_who_and_when(service, clock):
    request = await create(service, action="deploy.web", params={})
    clock.advance(timedelta(minutes=3))
    await service.vote(vote(request.id, "web", "bob"))
    late = await service.vote(vote(request.id, "slack", "U0ALICE", Verdict.DENY))
    assert isinstance(late, AlreadyDecided)
    assert late.by == "bob"
    assert late.at == clock.now()
    assert late.message == f"already approved by bob at {clock.now():%Y-%m-%d %H:%M} UTC"


async def test_unknown_request(service):
    assert await service.vote(vote("nope", "slack", "U0ALICE")) == NotFound("nope")
    assert await service.cancel("nope", "deploy-bot") == NotFound("nope")


async def test_auto_decisions_are_final_and_audited(service, store):
    approved = await create(service, action="users.read", params={})
    assert approved.status is Status.APPROVED
    assert approved.decision.by == "policy:read-only"
    assert approved.next_due_at is None
    denied = await create(service, action="db.drop_database")
    assert denied.status is Status.DENIED
    assert await audit_kinds(store, approved.id) == ["created", "decided"]
    assert await audit_kinds(store, denied.id) == ["created", "decided"]


async def test_only_the_requesting_agent_may_cancel(service, store):
    request = await create(service)
    other = await service.cancel(request.id, "another-bot")
    assert other == NotFound(request.id)
    cancelled = await service.cancel(request.id, "deploy-bot", "no longer needed")
    assert cancelled.request.status is Status.CANCELLED
    assert cancelled.request.decision.by == "deploy-bot"
    again = await service.cancel(request.id, "deploy-bot")
    assert isinstance(again, AlreadyDecided)
    assert (await service.vote(vote(request.id, "slack", "U0ALICE"))).status is Status.CANCELLED
    assert await audit_kinds(store, request.id) == ["created", "cancelled", "refused"]


async def test_policy_snapshot_survives_config_change(service, rules):
    request = await create(service)
    # The new config drops every policy but the catch-all; the request keeps its rules.
    service.reconfigure(
        Rules(
            policies=replace(rules.policies, policies=rules.policies.policies[-1:]),
            directory=rules.directory,
        )
    )
    stored = await service.get(request.id)
    assert stored.policy.name == "prod-db"
    assert stored.policy.quorum == 2


async def test_removed_approver_is_refused_after_reload(service, rules):
    request = await create(service)
    people = {name: p for name, p in rules.directory.people.items() if name != "alice"}
    service.reconfigure(
        Rules(
            policies=rules.policies,
            directory=Directory(people, rules.directory.channels, rules.directory.platforms),
        )
    )
    outcome = await service.vote(vote(request.id, "slack", "U0ALICE"))
    assert outcome.code is RefusalCode.UNKNOWN_IDENTITY


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (CreateCommand(agent="a", action="", title="t"), "action"),
        (CreateCommand(agent="a", action="x", title=" "), "title"),
        (CreateCommand(agent="a", action="x", title="t", params={"v": float("nan")}), "JSON"),
        (CreateCommand(agent="a", action="x", title="t", params={"v": "\ud800"}), "JSON"),
        (CreateCommand(agent="a", action="x", title="t", timeout=timedelta(0)), "timeout"),
        (CreateCommand(agent="a", action="x", title="t\x00"), "NUL"),
    ],
)
async def test_invalid_create_is_refused_with_a_reason(service, command, message):
    outcome = await service.create(command)
    assert isinstance(outcome, NotAllowed)
    assert outcome.code is RefusalCode.INVALID
    assert message in outcome.message


async def test_params_may_hold_any_json_string(service):
    params = {"nul": "a\x00b", "\x00key": ["\x00"]}
    created = await service.create(
        CreateCommand(agent="a", action="deploy.x", title="t", params=params)
    )
    assert isinstance(created, Created)
    assert (await service.get(created.request.id)).params == params


async def test_payload_hash_and_deadline_are_set_on_create(service, clock):
    request = await create(service, action="deploy.web", params={"v": 2}, timeout=timedelta(days=9))
    assert len(request.payload_sha256) == 64
    assert request.deadline == clock.now() + timedelta(hours=2)  # default policy's max_timeout
    stored = await service.get(request.id)
    assert stored == request


async def test_listeners_hear_every_committed_change(service):
    heard = []
    service.subscribe(lambda r: heard.append((r.id, r.status)))
    request = await create(service, action="deploy.web", params={})
    await service.vote(vote(request.id, "slack", "U0ALICE"))
    assert heard == [(request.id, Status.PENDING), (request.id, Status.APPROVED)]


async def test_adapter_refusals_are_audited(service, store):
    malformed = Click("telegram", "100001", None, "x", None, Verdict.APPROVE)
    await service.handle_click(malformed)
    async with store.read() as reader:
        [entry] = await reader.audit_entries()
    assert entry.kind == "refused"
    assert entry.actor == "telegram:100001"
    assert '"code":"malformed_click"' in entry.data
    assert (await store.verify_audit()).ok


async def test_approver_taken_out_of_the_policy_is_refused_on_pending_requests(service, rules):
    request = await create(service)
    policies = []
    for policy in rules.policies.policies:
        if policy.name == "prod-db":
            first, *rest = policy.levels
            first = replace(first, approvers=tuple(p for p in first.approvers if p != "bob"))
            policy = replace(policy, levels=(first, *rest))
        policies.append(policy)
    service.reconfigure(Rules(replace(rules.policies, policies=tuple(policies)), rules.directory))
    outcome = await service.vote(vote(request.id, "slack", "U0BOB"))
    assert outcome.code is RefusalCode.NOT_AN_APPROVER
    assert "no longer an approver" in outcome.message
    assert (await service.vote(vote(request.id, "slack", "U0ALICE"))).event is Event.VOTE


async def test_concurrent_creates_respect_max_open(service):
    import asyncio

    outcomes = await asyncio.gather(
        *(
            service.create(
                CreateCommand(
                    agent="flood-bot", action="deploy.web", title="t", params={"n": n}, max_open=3
                )
            )
            for n in range(20)
        )
    )
    created = [o for o in outcomes if isinstance(o, Created)]
    refused = [o for o in outcomes if isinstance(o, NotAllowed)]
    assert len(created) == 3
    assert {o.code for o in refused} == {RefusalCode.TOO_MANY_OPEN}
    assert "already has 3 pending requests" in refused[0].message

    # A request that leaves the pending state frees its slot, and only that one.
    await service.cancel(created[0].request.id, "flood-bot")
    again = [
        await service.create(
            CreateCommand(
                agent="flood-bot", action="deploy.web", title="t", params={"n": n}, max_open=3
            )
        )
        for n in range(20, 22)
    ]
    assert [type(o) for o in again] == [Created, NotAllowed]


async def test_replay_with_unhashable_params_is_refused_not_crashing(service):
    first = CreateCommand(agent="a", action="deploy.web", title="t", idempotency_key="k")
    assert isinstance(await service.create(first), Created)
    bad = replace(first, params={"v": float("nan")})
    outcome = await service.create(bad)
    assert outcome.code is RefusalCode.INVALID
