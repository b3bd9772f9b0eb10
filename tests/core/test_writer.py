"""The one writer: commands waiting together share a transaction and a commit, a failing
command fails alone, and every caller hears back only after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import func, insert, select

from approvals.audit import AuditKind
from approvals.clock import ManualClock
from approvals.model import CreateCommand
from approvals.store import SqlStore, WriteTx
from approvals.tables import AGENT_KEYS, AUDIT


def add_key(key_id: str, clock: ManualClock):
    """A command that inserts one agent key row and audits it; returns the key id."""

    def command(tx: WriteTx) -> str:
        tx.conn.execute(
            insert(AGENT_KEYS).values(
                key_id=key_id, agent="a", secret_sha256="0" * 64, created_at=clock.now()
            )
        )
        tx.append_audit(AuditKind.CONFIG_LOADED, at=clock.now(), actor=key_id)
        return key_id

    return command


async def key_ids(store: SqlStore) -> set[str]:
    async with store.read() as reader:
        return set((await reader.conn.execute(select(AGENT_KEYS.c.key_id))).scalars())


async def test_commands_waiting_together_share_one_transaction(store: SqlStore, clock):
    names = [f"k{n}" for n in range(50)]
    commands, batches = store.writer.commands, store.writer.batches
    results = await asyncio.gather(*(store.run(add_key(name, clock)) for name in names))
    assert results == names
    assert store.writer.commands - commands == 50
    assert store.writer.batches - batches < 50, "every command committed on its own"
    assert await key_ids(store) == set(names)
    verification = await store.verify_audit()
    assert (verification.ok, verification.checked) == (True, 50)


async def test_a_failing_command_fails_alone_and_leaves_no_trace(store: SqlStore, clock):
    def broken(tx: WriteTx) -> None:
        add_key("broken", clock)(tx)  # writes, audits, then fails
        raise RuntimeError("simulated bug")

    commands = [add_key("k1", clock), broken, add_key("k2", clock), add_key("k1", clock)]
    results = await asyncio.gather(*(store.run(c) for c in commands), return_exceptions=True)
    assert results[0] == "k1"
    assert isinstance(results[1], RuntimeError)
    assert results[2] == "k2"
    assert type(results[3]).__name__ == "IntegrityError"  # the same key twice
    assert await key_ids(store) == {"k1", "k2"}
    verification = await store.verify_audit()
    assert (verification.ok, verification.checked) == (True, 2)
    async with store.read() as reader:
        actors = (await reader.conn.execute(select(AUDIT.c.actor).order_by(AUDIT.c.seq))).all()
    assert [actor for (actor,) in actors] == ["k1", "k2"]


async def test_a_caller_hears_back_only_after_the_commit(store: SqlStore, clock):
    """What a command wrote is visible to a new read the moment its caller is answered."""
    for n in range(20):
        await store.run(add_key(f"k{n}", clock))
        async with store.read() as reader:
            count = (
                await reader.conn.execute(select(func.count()).select_from(AGENT_KEYS))
            ).scalar()
        assert count == n + 1


async def test_a_command_may_return_a_refusal_without_writing(store: SqlStore, clock):
    def refuse(tx: WriteTx) -> str:
        return "no"

    assert await store.run(refuse) == "no"
    assert await key_ids(store) == set()


async def test_event_loops_in_two_threads_share_one_store(sqlite_store: SqlStore, clock):
    """A store used from a second thread's event loop answers both loops' callers."""
    errors: list[BaseException] = []

    def other_thread() -> None:
        async def write_some() -> None:
            for n in range(20):
                await sqlite_store.run(add_key(f"t{n}", clock))

        try:
            asyncio.run(write_some())
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    for n in range(20):
        await sqlite_store.run(add_key(f"m{n}", clock))
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()
    assert errors == []
    assert len(await key_ids(sqlite_store)) == 40


@pytest.mark.parametrize("size", [1, 3])
async def test_the_audit_chain_continues_across_batches(store: SqlStore, clock, size):
    for round_ in range(3):
        await asyncio.gather(*(store.run(add_key(f"r{round_}-{n}", clock)) for n in range(size)))
    verification = await store.verify_audit()
    assert (verification.ok, verification.checked) == (True, 3 * size)


async def test_reads_do_not_wait_for_the_writer(sqlite_store: SqlStore, clock):
    """Another process holds SQLite's write lock: a write waits its turn, a read does not."""
    path = sqlite_store.url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.create_task(sqlite_store.run(add_key("k1", clock)))
        found = await asyncio.wait_for(sqlite_store.query(lambda reads: reads.agent_key("k1")), 5)
        assert found is None
        assert not write.done()
    finally:
        blocker.rollback()
        blocker.close()
    assert await asyncio.wait_for(write, 15) == "k1"
    added = await sqlite_store.query(lambda reads: reads.agent_key("k1"))
    assert added is not None
    assert added.agent == "a"


async def test_requests_under_one_policy_share_its_parsed_snapshot(service, store: SqlStore):
    """The policy snapshot is parsed once per distinct text, not once per row read."""
    first = (
        await service.create(
            CreateCommand(agent="a", action="deploy.web", title="1", params={"n": 1})
        )
    ).request
    second = (
        await service.create(
            CreateCommand(agent="a", action="deploy.web", title="2", params={"n": 2})
        )
    ).request
    assert first.id != second.id
    one, two = await store.query(
        lambda reads: (reads.get_request(first.id), reads.get_request(second.id))
    )
    assert one is not None
    assert two is not None
    assert one.policy == first.policy
    assert one.policy is two.policy
    listed = await store.query(lambda reads: reads.list_requests(agent="a"))
    assert {request.policy for request in listed} == {first.policy}
