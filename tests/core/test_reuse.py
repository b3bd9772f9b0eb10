"""An agent asking again for what it already has pending gets that request back.

The same agent, the same payload (action and params), on behalf of the same person, to the
same callback URL, while the first request is pending: one request, one set of cards, the
reuse audited. Anything different, or a first request already final, makes a new one; a
recorded ``Idempotency-Key`` still answers with the request it names.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Created, NotAllowed, RefusalCode
from approvals.service import ApprovalService
from approvals.store import SqlStore
from approvals.tables import OUTBOX, REQUESTS
from tests.world import _postgres_store, build_test_runtime, postgres_url

ASK = CreateCommand(
    agent="deploy-bot",
    action="deploy.web",
    title="Deploy web 1.4",
    params={"version": "1.4", "hosts": ["a", "b"]},
    max_open=100,
)


async def create(service: ApprovalService, command: CreateCommand = ASK) -> Created:
    outcome = await service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome


async def count(store: SqlStore, table: Any, **where: Any) -> int:
    async with store.read() as reader:
        statement = select(func.count()).select_from(table)
        for column, value in where.items():
            statement = statement.where(table.c[column] == value)
        return int((await reader.conn.execute(statement)).scalar_one())


async def open_count(store: SqlStore, agent: str = "deploy-bot") -> int:
    return await store.query(lambda reads: reads.count_open(agent))


async def audit_of(store: SqlStore, request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with store.read() as reader:
        entries = await reader.audit_entries(request_id=request_id)
    return [(entry.kind, entry.actor, json.loads(entry.data)) for entry in entries]


async def test_the_same_ask_while_pending_returns_the_first_request_audited(service, store):
    first = await create(service)
    cards = await count(store, OUTBOX, request_id=first.request.id)
    again = await create(service, replace(ASK, title="Deploy web 1.4 (asking again)"))
    assert again.reused
    assert not again.replayed
    assert again.request.id == first.request.id
    assert again.request.title == "Deploy web 1.4"  # the request as the approvers see it
    assert await count(store, REQUESTS) == 1
    assert await count(store, OUTBOX, request_id=first.request.id) == cards  # no new card
    assert await open_count(store) == 1
    kinds = await audit_of(store, first.request.id)
    assert [kind for kind, _, _ in kinds] == ["created", "reused"]
    _, actor, data = kinds[1]
    assert actor == "deploy-bot"
    assert data["payload_sha256"] == first.request.payload_sha256
    assert data["title"] == "Deploy web 1.4 (asking again)"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"params": {"version": "1.5", "hosts": ["a", "b"]}}, id="other params"),
        pytest.param({"params": {"version": "1.4", "hosts": ["b", "a"]}}, id="params reordered"),
        pytest.param({"action": "deploy.api"}, id="other action"),
        pytest.param({"agent": "report-bot"}, id="other agent"),
        pytest.param({"requested_by": "alice"}, id="on behalf of someone"),
        pytest.param({"callback_url": "https://hooks.example.com/a"}, id="other callback"),
    ],
)
async def test_a_different_ask_makes_a_new_request(service, store, change):
    first = await create(service)
    other = await create(service, replace(ASK, **change))
    assert not other.reused
    assert other.request.id != first.request.id
    assert await count(store, REQUESTS) == 2


async def test_asks_on_behalf_of_different_people_are_never_merged(service, store):
    # Four-eyes: bob's request must not come back to an agent acting for alice, whom bob
    # may approve; each person's ask is its own request.
    for_bob = await create(service, replace(ASK, requested_by="bob"))
    for_alice = await create(service, replace(ASK, requested_by="alice"))
    assert for_alice.request.id != for_bob.request.id
    again_for_bob = await create(service, replace(ASK, requested_by="bob"))
    assert again_for_bob.reused
    assert again_for_bob.request.id == for_bob.request.id


@pytest.mark.parametrize("ending", ["approve", "deny", "cancel", "expire"])
async def test_once_the_first_is_final_the_same_ask_makes_a_new_request(
    service, store, clock, ending
):
    first = await create(service)
    request_id = first.request.id
    if ending == "cancel":
        await service.cancel(request_id, "deploy-bot", "plan changed")
    elif ending == "expire":
        clock.advance(first.request.deadline - clock.now())
        await service.process_due()
    else:
        verdict = Verdict.APPROVE if ending == "approve" else Verdict.DENY
        await service.vote(VoteCommand(request_id, "slack", "U0ALICE", verdict, "checked"))
    assert (await service.get(request_id)).status.value != "pending"
    second = await create(service)
    assert not second.reused
    assert second.request.id != request_id


async def test_a_new_idempotency_key_on_a_reused_ask_names_the_first_request(service, store):
    first = await create(service, replace(ASK, idempotency_key="k-1"))
    again = await create(service, replace(ASK, idempotency_key="k-2"))
    assert again.reused
    assert again.request.id == first.request.id
    retried = await create(service, replace(ASK, idempotency_key="k-2"))
    assert retried.replayed
    assert retried.request.id == first.request.id
    assert await count(store, REQUESTS) == 1


async def test_a_recorded_idempotency_key_wins_over_a_pending_twin(service, store):
    first = await create(service, replace(ASK, idempotency_key="k-1"))
    await service.cancel(first.request.id, "deploy-bot", None)
    second = await create(service, replace(ASK, idempotency_key="k-2"))
    assert not second.reused
    assert second.request.id != first.request.id
    retried = await create(service, replace(ASK, idempotency_key="k-1"))
    assert retried.replayed
    assert retried.request.id == first.request.id  # the key's request, cancelled
    assert retried.request.status.value == "cancelled"


async def test_a_key_used_with_another_body_is_still_a_conflict(service):
    await create(service, replace(ASK, idempotency_key="k-1"))
    outcome = await service.create(replace(ASK, params={"version": "2"}, idempotency_key="k-1"))
    assert isinstance(outcome, NotAllowed)
    assert outcome.code is RefusalCode.IDEMPOTENCY_CONFLICT


async def test_requests_a_policy_decides_at_once_are_never_reused(service, store):
    read = replace(ASK, action="db.read")  # the read-only policy approves at once
    first = await create(service, read)
    second = await create(service, read)
    assert not second.reused
    assert second.request.id != first.request.id
    assert first.request.status.value == second.request.status.value == "approved"


async def test_an_agent_at_its_open_limit_still_gets_its_pending_request_back(service, store):
    limited = replace(ASK, max_open=1)
    first = await create(service, limited)
    again = await create(service, limited)
    assert again.reused
    assert again.request.id == first.request.id
    assert await open_count(store) == 1  # the slot the ask claimed is given back
    other = await service.create(replace(limited, params={"version": "2"}))
    assert isinstance(other, NotAllowed)
    assert other.code is RefusalCode.TOO_MANY_OPEN


async def test_concurrent_identical_asks_make_one_request(service, store):
    outcomes = await asyncio.gather(*(create(service) for _ in range(20)))
    assert len({outcome.request.id for outcome in outcomes}) == 1
    assert sum(not outcome.reused for outcome in outcomes) == 1
    assert await count(store, REQUESTS) == 1
    assert await open_count(store) == 1


@pytest.fixture
async def postgres_store() -> AsyncIterator[SqlStore]:
    """A migrated, empty PostgreSQL store (the one two processes would share)."""
    shared = await _postgres_store()
    yield shared
    await shared.close()


@pytest.mark.postgres
async def test_identical_asks_through_two_processes_make_one_request(postgres_store, rules, clock):
    # Each store has its own writer and connections, as two processes do.
    other_store = SqlStore(postgres_url())
    try:
        one = build_test_runtime(postgres_store, clock, rules).service
        two = build_test_runtime(other_store, clock, rules).service
        for round_ in range(10):  # the race is narrow: give it rounds to show
            ask = replace(ASK, params={"round": round_})
            outcomes = await asyncio.gather(
                *(create(one if n % 2 else two, ask) for n in range(20))
            )
            assert len({outcome.request.id for outcome in outcomes}) == 1, f"round {round_}"
        assert await count(postgres_store, REQUESTS) == 10
        assert await open_count(postgres_store) == 10
    finally:
        await other_store.close()
