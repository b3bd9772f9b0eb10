"""Time-boxed grants: "Approve for 1 h", and the same ask is approved at once until then.

An approver approves a request for a while; the same agent's later requests with the same
action and params (or the same values at the policy's ``grants.match`` paths) are approved
at once by the grant, audited and receipted as such, and nobody is asked. A grant ends
exactly at its bound, when revoked, and when the config no longer supports it; a quorum's
grant needs the quorum; a grant never approves a request made on behalf of its giver.
Each case runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from approvals.grants import GrantRef, GrantRevoked, GrantRule
from approvals.machine import Status
from approvals.model import (
    GRANT_PLATFORM,
    ApprovalRequest,
    CreateCommand,
    Verdict,
    VoteCommand,
    public_json,
)
from approvals.outcomes import Applied, Created, NotAllowed, NotFound, RefusalCode
from approvals.policy import EditsRule, Level, Match, Policy, PolicySet
from approvals.receipts import ReceiptSigner, receipt_body
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from approvals.store import grants as grant_rows
from approvals.tables import OUTBOX
from signoff_client import Approval, verify_receipt
from tests.core.test_reuse import count
from tests.world import make_directory

HOUR = timedelta(hours=1)
MIGRATE = CreateCommand(
    agent="deploy-bot",
    action="db.migrate",
    title="Run migration 42",
    params={"db": "orders", "migration": 42},
    max_open=100,
)
VACUUM = CreateCommand(
    agent="deploy-bot",
    action="db.vacuum",
    title="Vacuum users",
    params={"table": "users", "full": False},
    max_open=100,
)
ROTATE = CreateCommand(
    agent="deploy-bot", action="vault.rotate", title="Rotate a key", params={"key": "k1"}
)
ONE_LEVEL = (
    Level(approvers=("alice", "bob", "dave"), notify=("ops-slack",), timeout=timedelta(hours=2)),
)


def policies(*, migrations: Policy | None = None) -> PolicySet:
    return PolicySet(
        (
            migrations
            or Policy(
                name="migrations",
                match=Match(actions=("db.migrate",)),
                levels=ONE_LEVEL,
                grants=GrantRule(max=HOUR),
            ),
            Policy(
                name="maintenance",
                match=Match(actions=("db.vacuum",)),
                levels=ONE_LEVEL,
                grants=GrantRule(max=2 * HOUR, match=("params.table",)),
            ),
            Policy(
                name="vault",
                match=Match(actions=("vault.*",)),
                levels=ONE_LEVEL,
                quorum=2,
                grants=GrantRule(max=HOUR),
            ),
            Policy(name="default", levels=ONE_LEVEL),
        )
    )


@pytest.fixture
def rules() -> Rules:
    return Rules(policies=policies(), directory=make_directory())


async def create(service: ApprovalService, command: CreateCommand = MIGRATE) -> Created:
    outcome = await service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome


async def approve(
    service: ApprovalService,
    request_id: str,
    identity: str = "U0ALICE",
    grant_for: timedelta | None = HOUR,
) -> Any:
    return await service.vote(
        VoteCommand(request_id, "slack", identity, Verdict.APPROVE, grant_for=grant_for)
    )


async def give(
    service: ApprovalService, command: CreateCommand = MIGRATE, grant_for: timedelta = HOUR
) -> Applied:
    """alice approves ``command``'s request for ``grant_for``."""
    asked = await create(service, command)
    assert asked.request.status is Status.PENDING
    outcome = await approve(service, asked.request.id, grant_for=grant_for)
    assert isinstance(outcome, Applied), outcome
    return outcome


def grant_of(request: ApprovalRequest) -> GrantRef:
    """The grant a request's approval gave, or that approved it."""
    assert request.decision is not None
    assert request.decision.grant is not None
    return request.decision.grant


async def audit_of(store: SqlStore, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def test_an_approval_for_an_hour_approves_the_same_ask_at_once(service, store, clock):
    given = await give(service)
    source = given.request
    assert source.status is Status.APPROVED
    assert source.decision is not None
    assert source.decision.grant is not None
    grant = source.decision.grant
    assert grant.given_by == ("alice",)
    assert grant.until == clock.now() + HOUR
    assert [kind for kind, _ in await audit_of(store, source.id)] == [
        "created",
        "granted",
        "decided",
    ]
    given_at = clock.now()
    clock.advance(timedelta(minutes=20))

    again = (await create(service, replace(MIGRATE, title="Run migration 42 again"))).request

    assert again.status is Status.APPROVED
    decision = again.decision
    assert decision is not None
    assert decision.by == f"grant:{grant.id}"
    assert decision.platform == GRANT_PLATFORM
    assert decision.grant == grant
    assert decision.reason == (
        f"approved by grant {grant.id}, given by alice at "
        f"{given_at:%Y-%m-%d %H:%M:%S} UTC, until {given_at + HOUR:%Y-%m-%d %H:%M:%S} UTC"
    )
    assert await count(store, OUTBOX, request_id=again.id) == 0  # nobody is asked
    audit = await audit_of(store, again.id)
    assert [kind for kind, _ in audit] == ["created", "decided"]
    assert audit[1][1]["grant"]["id"] == grant.id
    assert audit[1][1]["deciders"] == ["alice"]
    body = receipt_body(again)
    assert body["deciders"] == ["alice"]
    assert body["grant"] == {
        "id": grant.id,
        "given_by": ["alice"],
        "given_at": f"{given_at:%Y-%m-%dT%H:%M:%S}Z",
        "until": f"{given_at + HOUR:%Y-%m-%dT%H:%M:%S}Z",
    }
    assert "grant" not in receipt_body(source)  # the source was approved by alice herself
    assert await store.query(lambda reads: reads.count_open("deploy-bot")) == 0


@pytest.mark.parametrize(
    ("later", "approved"),
    [
        pytest.param(timedelta(0), True, id="at once"),
        pytest.param(HOUR - timedelta(seconds=1), True, id="a second before the bound"),
        pytest.param(HOUR, False, id="exactly at the bound"),
        pytest.param(HOUR + timedelta(minutes=1), False, id="after the bound"),
    ],
)
async def test_a_grant_lasts_exactly_its_length(service, clock, later, approved):
    await give(service)
    clock.advance(later)
    again = await create(service)
    assert again.request.status is (Status.APPROVED if approved else Status.PENDING)


async def test_the_live_grants_are_listed_until_they_end(service, clock):
    given = await give(service)
    listed = await service.live_grants()
    assert [grant.source_request_id for grant in listed] == [given.request.id]
    assert listed[0].matched == {"params": MIGRATE.params}
    clock.advance(HOUR)
    assert await service.live_grants() == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"params": {"db": "orders", "migration": 43}}, id="other params"),
        pytest.param({"action": "db.vacuum"}, id="other action"),
        pytest.param({"agent": "other-bot"}, id="other agent"),
    ],
)
async def test_a_different_ask_is_asked_as_usual(service, change):
    await give(service)
    other = await create(service, replace(MIGRATE, **change))
    assert other.request.status is Status.PENDING


@pytest.mark.parametrize(
    ("params", "approved"),
    [
        pytest.param({"table": "users", "full": True}, True, id="same table, other params"),
        pytest.param({"table": "users"}, True, id="same table only"),
        pytest.param({"table": "orders", "full": False}, False, id="other table"),
        pytest.param({"full": False}, False, id="no table"),
    ],
)
async def test_a_grant_on_a_subset_compares_only_those_params(service, params, approved):
    given = await give(service, VACUUM, grant_for=2 * HOUR)
    grant = grant_of(given.request)
    assert (await service.live_grants())[0].matched == {"params.table": "users"}
    again = (await create(service, replace(VACUUM, params=params))).request
    assert again.status is (Status.APPROVED if approved else Status.PENDING)
    if approved:
        assert grant_of(again) == grant


async def test_a_revoked_grant_approves_nothing_more(service, store, clock):
    given = await give(service)
    grant = grant_of(given.request)
    clock.advance(timedelta(minutes=5))

    revoked = await service.revoke_grant(grant.id, by="alice", person="alice", reason="done")

    assert isinstance(revoked, GrantRevoked)
    assert not revoked.already_ended
    assert revoked.grant.revoked_at == clock.now()
    assert revoked.grant.revoked_by == "alice"
    assert (await create(service)).request.status is Status.PENDING
    assert await service.live_grants() == []
    kinds = await audit_of(store, given.request.id)
    assert kinds[-1] == ("grant_ended", {"grant": grant.id, "why": "revoked", "reason": "done"})
    again = await service.revoke_grant(grant.id, by="alice", person="alice")
    assert isinstance(again, GrantRevoked)
    assert again.already_ended


@pytest.mark.parametrize(
    ("person", "allowed"),
    [
        pytest.param("alice", True, id="its giver"),
        pytest.param("bob", True, id="another approver of the policy"),
        pytest.param("erin", False, id="someone else"),
        pytest.param(None, True, id="an admin's tool"),
    ],
)
async def test_who_may_revoke_a_grant(service, person, allowed):
    grant = grant_of((await give(service)).request)
    outcome = await service.revoke_grant(grant.id, by=person or "admin", person=person)
    if allowed:
        assert isinstance(outcome, GrantRevoked)
        assert (await create(service)).request.status is Status.PENDING
    else:
        assert isinstance(outcome, NotAllowed)
        assert outcome.code is RefusalCode.NOT_AN_APPROVER
        assert (await create(service)).request.status is Status.APPROVED


async def test_revoking_an_unknown_grant_is_not_found(service):
    assert await service.revoke_grant("g_nope", by="admin", person=None) == NotFound("g_nope")


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        pytest.param(
            replace(policies().policies[0], levels=(replace(ONE_LEVEL[0], approvers=("bob",)),)),
            "alice no longer approve(s) for policy migrations",
            id="giver removed",
        ),
        pytest.param(
            replace(policies().policies[0], grants=None),
            "policy migrations no longer allows grants",
            id="grants removed",
        ),
        pytest.param(
            replace(policies().policies[0], grants=GrantRule(max=timedelta(minutes=30))),
            "policy migrations now allows grants of at most 30 min",
            id="max shortened",
        ),
        pytest.param(
            replace(policies().policies[0], grants=GrantRule(max=HOUR, match=("params.db",))),
            "policy migrations now matches grants on other params",
            id="match changed",
        ),
    ],
)
async def test_a_config_change_ends_the_grants_it_no_longer_supports(
    service, store, rules, changed, why
):
    given = await give(service)
    grant = grant_of(given.request)
    service.reconfigure(replace(rules, policies=policies(migrations=changed)))

    # The lookup checks the config at each use, before any reload ends the grant...
    assert (await create(service)).request.status is Status.PENDING
    # ...and a reload ends it, audited.
    ended = await service.end_stale_grants()
    assert [(g.id, reason) for g, reason in ended] == [(grant.id, why)]
    assert await service.live_grants() == []
    audit = await audit_of(store, given.request.id)
    assert audit[-1] == ("grant_ended", {"grant": grant.id, "why": "config", "reason": why})
    service.reconfigure(rules)  # back as it was: an ended grant stays ended
    assert (await create(service)).request.status is Status.PENDING


async def test_a_config_change_that_keeps_the_giver_keeps_the_grant(service, rules):
    await give(service)
    kept = replace(policies().policies[0], levels=(replace(ONE_LEVEL[0], timeout=HOUR),))
    service.reconfigure(replace(rules, policies=policies(migrations=kept)))
    assert await service.end_stale_grants() == []
    assert (await create(service)).request.status is Status.APPROVED


@pytest.mark.parametrize(
    ("bob_asks", "grant_length"),
    [
        pytest.param(timedelta(minutes=15), timedelta(minutes=15), id="both ask: the shortest"),
        pytest.param(HOUR, HOUR, id="both ask for an hour"),
        pytest.param(None, None, id="bob approves plainly: no grant"),
    ],
)
async def test_a_quorum_grant_needs_the_quorum(service, clock, bob_asks, grant_length):
    asked = (await create(service, ROTATE)).request
    first = await approve(service, asked.id, "U0ALICE", HOUR)
    assert isinstance(first, Applied)
    assert first.request.status is Status.PENDING
    second = await approve(service, asked.id, "U0BOB", bob_asks)
    assert isinstance(second, Applied)
    assert second.request.status is Status.APPROVED

    assert second.request.decision is not None
    grant = second.request.decision.grant
    if grant_length is None:
        assert grant is None
        assert await service.live_grants() == []
        assert (await create(service, ROTATE)).request.status is Status.PENDING
        return
    assert grant is not None
    assert grant.given_by == ("alice", "bob")
    assert grant.until == clock.now() + grant_length
    again = (await create(service, ROTATE)).request
    assert again.status is Status.APPROVED
    assert receipt_body(again)["deciders"] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("requested_by", "approved"),
    [
        pytest.param("alice", False, id="for the giver"),
        pytest.param("Alice", False, id="for a name like the giver's"),
        pytest.param("carol", True, id="for someone else"),
        pytest.param(None, True, id="for nobody in particular"),
    ],
)
async def test_a_grant_never_approves_its_givers_own_request(service, requested_by, approved):
    await give(service)
    again = (await create(service, replace(MIGRATE, requested_by=requested_by))).request
    assert again.status is (Status.APPROVED if approved else Status.PENDING)


async def test_a_quorum_grant_never_approves_either_givers_own_request(service):
    asked = (await create(service, ROTATE)).request
    await approve(service, asked.id, "U0ALICE", HOUR)
    await approve(service, asked.id, "U0BOB", HOUR)
    for giver in ("alice", "bob"):
        again = await create(service, replace(ROTATE, requested_by=giver))
        assert again.request.status is Status.PENDING


@pytest.mark.parametrize(
    ("command", "grant_for", "code", "says"),
    [
        pytest.param(
            replace(MIGRATE, action="deploy.run"),
            HOUR,
            RefusalCode.GRANTS_FORBIDDEN,
            "policy default does not allow approving for a while (it has no grants)",
            id="policy without grants",
        ),
        pytest.param(
            MIGRATE,
            2 * HOUR,
            RefusalCode.GRANTS_FORBIDDEN,
            "policy migrations allows grants of at most 1 h, not 2 h",
            id="longer than max",
        ),
        pytest.param(
            MIGRATE,
            timedelta(0),
            RefusalCode.GRANTS_FORBIDDEN,
            "a grant must last a positive time",
            id="zero",
        ),
    ],
)
async def test_an_approval_for_a_while_beyond_the_policy_is_refused(
    service, command, grant_for, code, says
):
    asked = (await create(service, command)).request
    outcome = await approve(service, asked.id, grant_for=grant_for)
    assert outcome == NotAllowed(code, says)
    assert (await service.get(asked.id)).status is Status.PENDING  # nothing counted


async def test_a_deny_cannot_carry_a_grant(service):
    asked = (await create(service)).request
    outcome = await service.vote(
        VoteCommand(asked.id, "slack", "U0ALICE", Verdict.DENY, grant_for=HOUR)
    )
    assert outcome == NotAllowed(RefusalCode.INVALID, "only an approval can be given for a while")


async def test_an_approval_with_edits_gives_no_grant(service, rules):
    editable = replace(policies().policies[0], edits=EditsRule.ALLOWED)
    service.reconfigure(replace(rules, policies=policies(migrations=editable)))
    asked = (await create(service)).request
    outcome = await service.vote(
        VoteCommand(
            asked.id,
            "web",
            "alice",
            Verdict.APPROVE,
            edited_params={"db": "orders", "migration": 41},
            grant_for=HOUR,
        )
    )
    assert isinstance(outcome, NotAllowed)
    assert outcome.code is RefusalCode.GRANTS_FORBIDDEN
    assert "a grant covers only the params the agent asked for" in outcome.message


async def test_a_policy_without_grants_reads_no_grants_on_create(service, monkeypatch):
    """The common create path pays nothing for grants: no grant read at all."""
    reads: list[str] = []
    original = grant_rows.live_grants_for

    def counting(*args: Any) -> Any:
        reads.append(args[1])
        return original(*args)

    monkeypatch.setattr(grant_rows, "live_grants_for", counting)
    await create(service, replace(MIGRATE, action="deploy.run"))
    assert reads == []
    await create(service)
    assert reads == ["deploy-bot"]


async def test_the_client_verifies_a_receipt_approved_by_a_grant(service, store, clock):
    grant = grant_of((await give(service)).request)
    again = (await create(service)).request
    signer = ReceiptSigner(store, clock)
    receipt = await signer.sign(again)
    keys = {"keys": [key.to_json() for key in await signer.keys()]}

    signed = verify_receipt(
        receipt, MIGRATE.action, MIGRATE.params, keys, request_id=again.id, now=clock.now()
    )

    assert signed["grant"]["id"] == grant.id
    assert signed["deciders"] == ["alice"]


async def test_the_client_names_the_grants_givers_as_deciders(service):
    grant = grant_of((await give(service)).request)
    again = (await create(service)).request

    approval = Approval.from_json(public_json(again))

    assert approval.approved
    assert approval.decision is not None
    assert approval.decision.grant is not None
    assert approval.decision.grant["id"] == grant.id
    assert approval.deciders == ("alice",)
