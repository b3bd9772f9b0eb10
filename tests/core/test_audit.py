"""The audit log: one entry per command, a verifying hash chain, tampering found at its seq."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, insert, update

from approvals.audit import GENESIS_HASH, AuditEntry, entry_hash
from approvals.clock import ManualClock
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import AlreadyDecided, Applied, Created, NotAllowed, RefusalCode
from approvals.service import ApprovalService
from approvals.store import Reads, SqlStore, WriteTx
from approvals.tables import AUDIT
from tests.fakes.recording import RecordingAdapter

PROD = {"env": "prod"}


async def create(
    service: ApprovalService, action: str, params: dict[str, Any] | None = None
) -> str:
    outcome = await service.create(
        CreateCommand(agent="deploy-bot", action=action, title=f"Run {action}", params=params or {})
    )
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


def vote(
    request_id: str, platform: str, identity: str, verdict: Verdict = Verdict.APPROVE, reason=None
) -> VoteCommand:
    return VoteCommand(request_id, platform, identity, verdict, reason)


async def audit_log(store: SqlStore, request_id: str | None = None) -> list[AuditEntry]:
    async with store.read() as reader:
        return await reader.audit_entries(request_id=request_id)


async def kinds_of(store: SqlStore, request_id: str) -> list[tuple[str, str]]:
    return [(entry.kind, entry.actor) for entry in await audit_log(store, request_id)]


def dispatcher_for(store: SqlStore, clock: ManualClock) -> OutboxDispatcher:
    adapters = {name: RecordingAdapter(name) for name in ("slack", "telegram", "discord")}
    return OutboxDispatcher(store, adapters, clock)


async def assert_chain_ok(store: SqlStore, expected_entries: int) -> None:
    verification = await store.verify_audit()
    assert verification.ok, verification
    assert verification.checked == expected_entries


# -- one entry per command --------------------------------------------------------------------


async def test_quorum_flow_audits_votes_refusals_reminder_escalation_and_decision(
    service, store, clock
):
    dispatcher = dispatcher_for(store, clock)
    request_id = await create(service, "db.migrate", PROD)
    await dispatcher.drain()
    clock.advance(timedelta(minutes=1))
    assert isinstance(await service.vote(vote(request_id, "slack", "U0ALICE")), Applied)
    stranger = await service.vote(vote(request_id, "telegram", "100005"))
    assert isinstance(stranger, NotAllowed)
    assert stranger.code is RefusalCode.NOT_AN_APPROVER
    twice = await service.vote(vote(request_id, "telegram", "100001"))
    assert isinstance(twice, NotAllowed)
    assert twice.code is RefusalCode.ALREADY_VOTED
    no_reason = await service.vote(vote(request_id, "slack", "U0BOB", Verdict.DENY))
    assert isinstance(no_reason, NotAllowed)
    assert no_reason.code is RefusalCode.REASON_REQUIRED
    clock.advance(timedelta(minutes=4))
    assert await service.process_due() == 1  # reminder
    await dispatcher.drain()
    clock.advance(timedelta(minutes=10))
    assert await service.process_due() == 1  # escalation to carol
    await dispatcher.drain()
    decided = await service.vote(vote(request_id, "discord", "200003"))
    assert isinstance(decided, Applied)
    assert decided.request.status is Status.APPROVED
    await dispatcher.drain()
    late = await service.vote(vote(request_id, "slack", "U0DAVE", Verdict.DENY, "too late"))
    assert isinstance(late, AlreadyDecided)

    entries = await audit_log(store)
    assert [entry.request_id for entry in entries] == [request_id] * len(entries)
    assert [e.seq for e in entries] == list(range(1, 13))
    observed = [(e.kind, e.actor) for e in entries]
    observed[1:3] = sorted(observed[1:3])  # both cards go out in the same round
    assert observed == [
        ("created", "deploy-bot"),
        ("delivered", "slack"),
        ("delivered", "telegram"),
        ("voted", "alice"),
        ("refused", "telegram:100005"),
        ("refused", "telegram:100001"),
        ("refused", "slack:U0BOB"),
        ("reminded", "timeout"),
        ("escalated", "timeout"),
        ("delivered", "discord"),
        ("decided", "carol"),
        ("refused", "slack:U0DAVE"),
    ]
    data = [json.loads(e.data) for e in entries]
    assert data[0]["policy"] == "prod-db"
    assert data[9]["destination"] == "discord:user:200003"
    assert data[9]["ref"] == {"target": "discord:user:200003", "message": 1}
    assert (data[3]["approvals"], data[3]["quorum"]) == (1, 2)
    assert [data[i]["code"] for i in (4, 5, 6, 11)] == [
        "not_an_approver",
        "already_voted",
        "reason_required",
        "already_decided",
    ]
    assert data[7] == {"level": 0}
    assert data[8] == {"approvers": ["carol"], "from_level": 0, "to_level": 1}
    assert (data[10]["status"], data[10]["deciders"]) == ("approved", ["alice", "carol"])
    await assert_chain_ok(store, 12)


async def test_timeouts_cancel_denial_and_auto_decisions_are_audited(service, store, clock):
    dispatcher = dispatcher_for(store, clock)
    auto_approved = await create(service, "db.read")
    auto_denied = await create(service, "db.drop_database")
    expiring = await create(service, "cache.flush")
    lenient = await create(service, "docs.publish")
    cancelled = await create(service, "deploy.web")
    denied = await create(service, "deploy.api")
    await dispatcher.drain()
    clock.advance(timedelta(minutes=1))
    assert isinstance(await service.cancel(cancelled, "deploy-bot", "not needed"), Applied)
    outcome = await service.vote(vote(denied, "slack", "U0BOB", Verdict.DENY))
    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.DENIED
    clock.advance(timedelta(minutes=9))
    assert await service.process_due() == 2  # cache.flush expires, docs.publish is approved

    assert await kinds_of(store, auto_approved) == [
        ("created", "deploy-bot"),
        ("decided", "policy:read-only"),
    ]
    assert await kinds_of(store, auto_denied) == [
        ("created", "deploy-bot"),
        ("decided", "policy:forbidden"),
    ]
    assert await kinds_of(store, expiring) == [
        ("created", "deploy-bot"),
        ("delivered", "discord"),
        ("expired", "timeout"),
    ]
    assert await kinds_of(store, lenient) == [("created", "deploy-bot"), ("decided", "timeout")]
    assert await kinds_of(store, cancelled) == [
        ("created", "deploy-bot"),
        ("delivered", "slack"),
        ("cancelled", "deploy-bot"),
    ]
    assert await kinds_of(store, denied) == [
        ("created", "deploy-bot"),
        ("delivered", "slack"),
        ("decided", "bob"),
    ]
    statuses = {
        request_id: json.loads((await audit_log(store, request_id))[-1].data)["status"]
        for request_id in (auto_approved, auto_denied, expiring, lenient, cancelled, denied)
    }
    assert statuses == {
        auto_approved: "approved",
        auto_denied: "denied",
        expiring: "expired",
        lenient: "approved",
        cancelled: "cancelled",
        denied: "denied",
    }
    await assert_chain_ok(store, 15)


async def test_entries_link_each_to_the_one_before(service, store, clock):
    for action in ("deploy.web", "db.read", "cache.flush"):
        await create(service, action)
        clock.advance(timedelta(seconds=1))
    entries = await audit_log(store)
    assert [e.prev_hash for e in entries] == [GENESIS_HASH] + [e.hash for e in entries[:-1]]
    for entry in entries:
        assert entry.hash == entry_hash(
            seq=entry.seq,
            at=entry.at,
            kind=entry.kind,
            request_id=entry.request_id,
            actor=entry.actor,
            data=entry.data,
            prev_hash=entry.prev_hash,
        )
    async with store.read() as reader:
        assert await reader.audit_head() == (entries[-1].seq, entries[-1].hash)


async def test_empty_log_verifies(store):
    verification = await store.verify_audit()
    assert verification.ok
    assert verification.checked == 0


# -- tampering --------------------------------------------------------------------------------


async def build_chain(service: ApprovalService, clock: ManualClock) -> int:
    """Ten entries of seven kinds, one second apart. Returns how many."""
    steps: list[Any] = []
    first = await create(service, "deploy.web")
    clock.advance(timedelta(seconds=1))
    steps.append(await service.vote(vote(first, "slack", "U0ALICE")))
    clock.advance(timedelta(seconds=1))
    prod = await create(service, "db.migrate", PROD)
    clock.advance(timedelta(seconds=1))
    steps.append(await service.vote(vote(prod, "slack", "U0ALICE")))
    clock.advance(timedelta(seconds=1))
    steps.append(await service.vote(vote(prod, "telegram", "100005")))
    clock.advance(timedelta(seconds=1))
    steps.append(await service.vote(vote(prod, "slack", "U0BOB", Verdict.DENY, "risky")))
    clock.advance(timedelta(seconds=1))
    await create(service, "cache.flush")
    clock.advance(timedelta(minutes=10))
    assert await service.process_due() == 1
    clock.advance(timedelta(seconds=1))
    last = await create(service, "deploy.api")
    clock.advance(timedelta(seconds=1))
    steps.append(await service.cancel(last, "deploy-bot"))
    assert [type(step) for step in steps] == [Applied, Applied, NotAllowed, Applied, Applied]
    return 10


async def set_column(store: SqlStore, seq: int, column: str, value: object) -> None:
    def _change(tx: WriteTx) -> None:
        result = tx.conn.execute(update(AUDIT).where(AUDIT.c.seq == seq).values({column: value}))
        assert result.rowcount == 1

    await store.run(_change)


async def delete_entries(store: SqlStore, *seqs: int) -> None:
    def _change(tx: WriteTx) -> None:
        tx.conn.execute(delete(AUDIT).where(AUDIT.c.seq.in_(seqs)))

    await store.run(_change)


def flip_one_character(value: str) -> str:
    middle = len(value) // 2
    replacement = "1" if value[middle] != "1" else "2"
    return value[:middle] + replacement + value[middle + 1 :]


@pytest.mark.parametrize(
    "column", ["data", "kind", "actor", "at", "prev_hash", "hash", "request_id"]
)
async def test_one_changed_character_is_found_at_its_entry(service, store, clock, column):
    total = await build_chain(service, clock)
    entries = await audit_log(store)
    assert len(entries) == total
    for entry in entries:
        original = getattr(entry, column)
        if column == "at":
            tampered: object = original + timedelta(seconds=1)  # one digit of the stored time
        else:
            tampered = flip_one_character(original)
        await set_column(store, entry.seq, column, tampered)
        verification = await store.verify_audit()
        assert verification.broken is not None, (column, entry.seq)
        assert verification.broken.seq == entry.seq, (column, verification)
        assert verification.checked == entry.seq - 1
        await set_column(store, entry.seq, column, original)
    await assert_chain_ok(store, total)


@pytest.mark.parametrize("seq", [1, 4, 9])
async def test_deleted_entry_is_reported_missing(service, store, clock, seq):
    total = await build_chain(service, clock)
    await delete_entries(store, seq)
    verification = await store.verify_audit()
    assert verification.broken is not None
    assert (verification.broken.seq, verification.broken.reason) == (seq, f"entry {seq} is missing")
    assert verification.checked == seq - 1
    assert total == 10


@pytest.mark.parametrize("removed", [1, 3])
async def test_truncated_tail_is_caught_by_the_head(service, store, clock, removed):
    total = await build_chain(service, clock)
    await delete_entries(store, *range(total - removed + 1, total + 1))
    verification = await store.verify_audit()
    assert verification.broken is not None
    assert verification.broken.seq == total - removed + 1
    assert verification.broken.reason == "the chain does not end at the recorded head"
    assert verification.checked == total - removed


async def test_swapped_entries_are_found_at_the_first(service, store, clock):
    await build_chain(service, clock)
    entries = await audit_log(store)
    third, fourth = entries[2], entries[3]
    for column in ("at", "kind", "request_id", "actor", "data"):
        await set_column(store, 3, column, getattr(fourth, column))
        await set_column(store, 4, column, getattr(third, column))
    verification = await store.verify_audit()
    assert verification.broken is not None
    assert verification.broken.seq == 3


async def test_long_chain_verifies_in_batches_and_finds_tampering_in_a_later_batch(
    service, store, clock
):
    total = await build_chain(service, clock)
    for batch in (1, 3, 4, total, 5000):
        verification = await store.verify_audit(batch=batch)
        assert verification.ok, (batch, verification)
        assert verification.checked == total

    entries = await audit_log(store)
    await set_column(store, 8, "data", flip_one_character(entries[7].data))
    verification = await store.verify_audit(batch=3)
    assert verification.broken is not None
    assert (verification.broken.seq, verification.checked) == (8, 7)
    await set_column(store, 8, "data", entries[7].data)

    await delete_entries(store, total)  # truncation: the fourth batch comes back empty
    verification = await store.verify_audit(batch=3)
    assert verification.broken is not None
    assert (verification.broken.seq, verification.checked) == (total, total - 1)

    await delete_entries(store, 7)  # the first entry of the third batch
    verification = await store.verify_audit(batch=3)
    assert verification.broken is not None
    assert (verification.broken.seq, verification.checked) == (7, 6)
    assert verification.broken.reason == "entry 7 is missing"


async def test_entries_forged_beyond_the_head_are_reported_at_the_first(service, store, clock):
    total = await build_chain(service, clock)
    last = (await audit_log(store))[-1]
    at = last.at

    def _change(tx: WriteTx) -> None:
        prev_hash = last.hash
        for seq in (total + 1, total + 2):
            fields: dict[str, Any] = {
                "seq": seq,
                "at": at,
                "kind": "decided",
                "request_id": last.request_id,
                "actor": "mallory",
                "data": "{}",
                "prev_hash": prev_hash,
            }
            prev_hash = entry_hash(**fields)
            tx.conn.execute(insert(AUDIT).values(**fields, hash=prev_hash))

    await store.run(_change)
    verification = await store.verify_audit()
    assert verification.broken is not None
    assert verification.broken.seq == total + 1


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_creates_keep_one_linear_chain(service, store):
    outcomes = await asyncio.gather(
        *(
            service.create(
                CreateCommand(
                    agent="deploy-bot", action="deploy.web", title=f"#{n}", params={"n": n}
                )
            )
            for n in range(30)
        )
    )
    assert all(isinstance(outcome, Created) for outcome in outcomes)
    entries = await audit_log(store)
    assert [e.seq for e in entries] == list(range(1, 31))
    assert [e.prev_hash for e in entries] == [GENESIS_HASH] + [e.hash for e in entries[:-1]]
    assert sorted(str(e.request_id) for e in entries) == sorted(o.request.id for o in outcomes)
    async with store.read() as reader:
        assert await reader.audit_head() == (30, entries[-1].hash)
    await assert_chain_ok(store, 30)


async def test_concurrent_votes_deliveries_and_creates_keep_the_chain_valid(service, store, clock):
    ids = [await create(service, "deploy.web", {"n": n}) for n in range(20)]
    dispatcher = dispatcher_for(store, clock)
    await asyncio.gather(
        dispatcher.drain(),
        *(service.vote(vote(request_id, "slack", "U0ALICE")) for request_id in ids),
        *(create(service, "db.read") for _ in range(10)),
    )
    await dispatcher.drain()
    entries = await audit_log(store)
    counts = {kind: [e.kind for e in entries].count(kind) for kind in {e.kind for e in entries}}
    assert counts == {"created": 30, "decided": 30, "delivered": 20}
    assert [e.seq for e in entries] == list(range(1, 81))
    await assert_chain_ok(store, 80)


async def test_verify_sees_one_snapshot_while_another_process_appends(
    service, store, clock, monkeypatch
):
    for n in range(3):
        await create(service, "deploy.web", {"n": n})
    original = Reads.audit_entries
    appended: list[str] = []

    async def entries_while_someone_appends(self: Reads, **kwargs: Any) -> list[AuditEntry]:
        if not appended:
            # Another process commits an entry after the head was read, before the walk.
            appended.append(await create(service, "deploy.api"))
        return await original(self, **kwargs)

    monkeypatch.setattr(Reads, "audit_entries", entries_while_someone_appends)
    verification = await store.verify_audit()
    assert appended
    assert verification.ok, verification
    assert verification.checked == 3


async def test_chain_written_with_a_non_utc_clock_still_verifies(store, rules):
    clock = ManualClock(datetime(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    service = ApprovalService(store, rules, clock)
    await create(service, "deploy.web")
    entry = (await audit_log(store))[0]
    assert entry.at == datetime(2030, 1, 1, tzinfo=UTC)
    await assert_chain_ok(store, 1)
