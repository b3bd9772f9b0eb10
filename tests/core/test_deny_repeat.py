"""Denial memory (``deny_repeat``): people said no, so the same ask is denied at once.

For ``deny_repeat`` after people denied a request, the same agent asking the same payload
(same action and params) again gets a request denied at once by the policy, whose reason
cites the earlier denial (who, when, which request, why); nobody is asked. Only people's
denials count: a timeout, a policy's own decision or an earlier repeat does not, so a
repeat never extends the memory. Each case runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from approvals.machine import Status
from approvals.model import SYSTEM_PLATFORM, CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from approvals.tables import OUTBOX
from tests.core.test_reuse import count
from tests.world import make_directory

MEMORY = timedelta(minutes=30)
PAY = CreateCommand(
    agent="pay-bot",
    action="pay.invoice",
    title="Pay invoice 7",
    params={"invoice": 7, "amount": {"value": 1200, "currency": "EUR"}},
    max_open=100,
)
ONE_LEVEL = (Level(approvers=("alice", "bob"), notify=("ops-slack",), timeout=timedelta(hours=2)),)


@pytest.fixture
def rules() -> Rules:
    return Rules(
        policies=PolicySet(
            (
                Policy(
                    name="payments",
                    match=Match(actions=("pay.*",)),
                    levels=ONE_LEVEL,
                    deny_repeat=MEMORY,
                ),
                Policy(name="default", levels=ONE_LEVEL),
            )
        ),
        directory=make_directory(),
    )


async def create(service: ApprovalService, command: CreateCommand = PAY) -> Created:
    outcome = await service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome


async def deny_by_bob(service: ApprovalService, command: CreateCommand = PAY) -> Created:
    asked = await create(service, command)
    assert asked.request.status is Status.PENDING
    vote = VoteCommand(asked.request.id, "slack", "U0BOB", Verdict.DENY, "wrong IBAN")
    await service.vote(vote)
    return asked


async def audit_kinds(store: SqlStore, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, json.loads(entry.data)) for entry in entries]


async def test_the_same_ask_after_a_denial_is_denied_at_once_citing_it(service, store, clock):
    denied = await deny_by_bob(service)
    clock.advance(timedelta(minutes=5))

    again = await create(service, replace(PAY, title="Pay invoice 7, please"))

    repeat = again.request
    assert repeat.id != denied.request.id
    assert repeat.status is Status.DENIED
    assert repeat.decision is not None
    assert repeat.decision.by == "policy:payments"
    assert repeat.decision.platform == SYSTEM_PLATFORM
    reason = repeat.decision.reason or ""
    assert reason.startswith(f"bob denied this same request ({denied.request.id}) at ")
    assert '"wrong IBAN"' in reason
    assert "Policy payments denies it again at once until " in reason
    assert await count(store, OUTBOX, request_id=repeat.id) == 0  # nobody is asked
    kinds = await audit_kinds(store, repeat.id)
    assert [kind for kind, _ in kinds] == ["created", "decided"]
    assert kinds[1][1]["reason"] == reason
    assert await store.query(lambda reads: reads.count_open("pay-bot")) == 0


@pytest.mark.parametrize(
    ("later", "denied_again"),
    [
        pytest.param(timedelta(0), True, id="at once"),
        pytest.param(MEMORY - timedelta(seconds=1), True, id="a second before the end"),
        pytest.param(MEMORY, False, id="exactly at the end"),
        pytest.param(MEMORY + timedelta(minutes=1), False, id="after the end"),
    ],
)
async def test_the_memory_lasts_exactly_deny_repeat(service, clock, later, denied_again):
    await deny_by_bob(service)
    clock.advance(later)
    again = await create(service)
    expected = Status.DENIED if denied_again else Status.PENDING
    assert again.request.status is expected


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            {"params": {"invoice": 8, "amount": {"value": 1200, "currency": "EUR"}}},
            id="other params",
        ),
        pytest.param({"action": "pay.refund"}, id="other action"),
        pytest.param({"agent": "other-bot"}, id="other agent"),
    ],
)
async def test_a_different_ask_is_asked_as_usual(service, change):
    await deny_by_bob(service)
    other = await create(service, replace(PAY, **change))
    assert other.request.status is Status.PENDING


async def test_on_behalf_of_someone_else_is_still_the_agents_same_ask(service):
    await deny_by_bob(service, replace(PAY, requested_by="carol"))
    again = await create(service, replace(PAY, requested_by="dave"))
    assert again.request.status is Status.DENIED


async def test_a_policy_without_deny_repeat_asks_again(service):
    elsewhere = replace(PAY, action="invoice.pay")  # the default policy: no memory
    await deny_by_bob(service, elsewhere)
    again = await create(service, elsewhere)
    assert again.request.status is Status.PENDING


@pytest.mark.parametrize("ending", ["approved", "timed out", "cancelled"])
async def test_only_peoples_denials_are_remembered(service, clock, ending):
    first = await create(service)
    if ending == "approved":
        await service.vote(VoteCommand(first.request.id, "slack", "U0ALICE", Verdict.APPROVE))
    elif ending == "timed out":  # the default on_timeout denies, by nobody
        clock.advance(first.request.deadline - clock.now())
        await service.process_due()
    else:
        await service.cancel(first.request.id, "pay-bot", "not needed")
    again = await create(service)
    assert again.request.status is Status.PENDING


async def test_repeats_denied_at_once_do_not_extend_the_memory(service, clock):
    await deny_by_bob(service)
    clock.advance(MEMORY - timedelta(minutes=1))
    assert (await create(service)).request.status is Status.DENIED
    clock.advance(timedelta(minutes=1))  # the memory of bob's denial ends here
    assert (await create(service)).request.status is Status.PENDING


async def test_a_repeat_denied_at_once_keeps_no_open_slot(service, store):
    await deny_by_bob(service)
    for _ in range(3):
        assert (await create(service, replace(PAY, max_open=1))).request.status is Status.DENIED
    assert await store.query(lambda reads: reads.count_open("pay-bot")) == 0
    other = await create(service, replace(PAY, params={"invoice": 9}, max_open=1))
    assert other.request.status is Status.PENDING
