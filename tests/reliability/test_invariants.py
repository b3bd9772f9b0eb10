"""The invariant checker catches each kind of violation it exists for (seeded on purpose).

A checker that never fails proves nothing, so each invariant gets a store that breaks it in
exactly one way, next to a clean run that passes, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from approvals.audit import AuditKind
from approvals.model import CastVote, CreateCommand, Verdict, VoteCommand
from approvals.service import SEND
from approvals.store import WriteTx
from approvals.tables import AUDIT, OUTBOX
from tests.fakes.recording import RecordingAdapter
from tests.reliability.invariants import check_invariants, rendered_cards, shown_status
from tests.world import deliver_through

SWEEP = timedelta(seconds=1)


@pytest.fixture
def adapters():
    return {name: RecordingAdapter(name) for name in ("slack", "telegram", "discord")}


async def _decided_and_delivered(runtime, adapters):
    """One approved request (cards posted and edited) and one pending one."""
    service = runtime.service
    approved = (
        await service.create(CreateCommand(agent="a", action="deploy.web", title="Deploy"))
    ).request
    pending = (
        await service.create(CreateCommand(agent="a", action="deploy.api", title="Deploy api"))
    ).request
    await service.vote(VoteCommand(approved.id, "slack", "U0ALICE", Verdict.APPROVE))
    await deliver_through(runtime, adapters).drain()
    return approved, pending


async def _cards(store, adapters):
    """What each recorded card shows now, read back through :func:`rendered_cards`."""
    owner = {}  # (platform, message number) -> request id
    latest = {}  # (request id, destination) -> the status line of the last rendering
    for name, adapter in adapters.items():
        sends = [call for call in adapter.calls if call.kind == "send"]
        for number, call in enumerate(sends, start=1):
            owner[(name, number)] = call.card.request_id
        for call in adapter.calls:
            if call.kind in ("send", "edit"):
                latest[(call.card.request_id, call.destination)] = call.card.status_line

    def read(destination, ref):
        request_id = owner.get((destination.split(":")[0], ref["message"]))
        line = latest.get((request_id, destination))
        return None if line is None else f"Title\nStatus: {line}"

    return await rendered_cards(store, read)


async def test_a_clean_run_passes_and_reports_what_it_checked(
    runtime, service, store, clock, adapters
):
    """Invariants 1-6 hold after a request is approved and its cards are edited."""
    approved, pending = await _decided_and_delivered(runtime, adapters)
    cards = await _cards(store, adapters)
    assert cards[approved.id] == {"slack:channel:C0OPS": "approved"}
    assert cards[pending.id] == {"slack:channel:C0OPS": "pending"}
    report = await check_invariants(
        store,
        now=clock.now(),
        sweep_interval=SWEEP,
        accepted=[approved.id, pending.id],
        delivered_to_agent=[approved.id],
        cards=cards,
    )
    assert (report.requests, report.pending, report.final, report.votes) == (2, 1, 1, 1)
    assert report.cards_checked == 1
    assert report.outbox == {"sent": 3}
    assert report.audit_entries >= 5


async def test_1_an_accepted_request_without_a_row_is_caught(service, store, clock):
    """Invariant 1: a 2xx answered for an id that has no row."""
    with pytest.raises(AssertionError, match=r"\[1\] request req_lost was accepted"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP, accepted=["req_lost"])


async def test_2_a_request_left_past_its_deadline_is_caught(service, store, clock):
    """Invariant 2: pending beyond its deadline + 2 sweeps; within the grace it passes."""
    request = (
        await service.create(CreateCommand(agent="a", action="cache.flush", title="Flush"))
    ).request
    grace_end = request.deadline + 2 * SWEEP
    patient = timedelta(hours=1)  # the card's outbox row is not what this test is about
    await check_invariants(store, now=grace_end, sweep_interval=SWEEP, max_backoff=patient)
    with pytest.raises(AssertionError, match=rf"\[2\] request {request.id} is pending with a"):
        await check_invariants(
            store, now=grace_end + SWEEP, sweep_interval=SWEEP, max_backoff=patient
        )


async def test_2_a_missed_escalation_is_caught(service, store, clock):
    """Invariant 2: a level whose time passed long ago, not yet escalated."""
    request = (
        await service.create(
            CreateCommand(agent="a", action="db.migrate", title="Migrate", params={"env": "prod"})
        )
    ).request
    second_level_starts = request.level_starts()[1]
    with pytest.raises(AssertionError, match="escalation to level 1"):
        await check_invariants(store, now=second_level_starts + 3 * SWEEP, sweep_interval=SWEEP)


async def test_3_a_second_final_entry_is_caught(runtime, service, store, clock, adapters):
    """Invariant 3: two final audit entries for one decision (the chain itself is intact)."""
    approved, _ = await _decided_and_delivered(runtime, adapters)

    def _change(tx: WriteTx) -> None:
        tx.append_audit(
            AuditKind.DECIDED,
            at=clock.now(),
            actor="bob",
            request_id=approved.id,
            data={"status": "approved"},
        )

    await store.run(_change)
    with pytest.raises(AssertionError, match="has 2 final audit entries"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_3_a_vote_without_its_entry_is_caught(service, store, clock):
    """Invariant 3: a counted vote that left no audit entry."""
    request = (
        await service.create(
            CreateCommand(agent="a", action="db.migrate", title="Migrate", params={"env": "prod"})
        )
    ).request

    def _change(tx: WriteTx) -> None:
        tx.insert_vote(
            request.id,
            CastVote("alice", Verdict.APPROVE, "slack", "U0ALICE", None, clock.now()),
        )

    await store.run(_change)
    with pytest.raises(AssertionError, match="has 1 votes and 0 vote entries"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_3_a_final_status_without_its_entry_is_caught(service, store, clock):
    """Invariant 3: a request made final behind the audit log's back."""
    request = (await service.create(CreateCommand(agent="a", action="x.y", title="t"))).request

    def _change(tx: WriteTx) -> None:
        tx.conn.execute(
            text("UPDATE requests SET status = 'denied' WHERE id = :id"), {"id": request.id}
        )

    await store.run(_change)
    with pytest.raises(AssertionError, match="has 0 final audit entries"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_3_an_escalation_entry_out_of_order_is_caught(service, store, clock):
    """Invariant 3: the escalation entries must lead, step by step, to the current level."""
    request = (
        await service.create(
            CreateCommand(agent="a", action="db.migrate", title="Migrate", params={"env": "prod"})
        )
    ).request

    def _change(tx: WriteTx) -> None:
        tx.append_audit(
            AuditKind.ESCALATED,
            at=clock.now(),
            actor="timeout",
            request_id=request.id,
            data={"from_level": 0, "to_level": 1},
        )

    await store.run(_change)
    with pytest.raises(AssertionError, match="escalation entries lead to level 1"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_3_one_flipped_byte_in_the_audit_log_is_caught(
    runtime, service, store, clock, adapters
):
    """Invariant 3: the hash chain, with a byte of one entry's data changed."""
    await _decided_and_delivered(runtime, adapters)

    def _change(tx: WriteTx) -> Any:
        first = tx.conn.execute(select(AUDIT).order_by(AUDIT.c.seq).limit(1)).one()
        tx.conn.execute(
            update(AUDIT)
            .where(AUDIT.c.seq == first.seq)
            .values(data=first.data.replace("a", "b", 1))
        )
        return first

    first = await store.run(_change)
    with pytest.raises(AssertionError, match=rf"audit chain breaks at entry {first.seq}"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_4_a_row_pending_past_the_maximum_backoff_is_caught(service, store, clock):
    """Invariant 4: an outbox row nobody sent for longer than the backoff cap."""
    await service.create(CreateCommand(agent="a", action="x.y", title="t"))
    max_backoff = timedelta(minutes=5)
    await check_invariants(
        store, now=clock.now() + max_backoff, sweep_interval=SWEEP, max_backoff=max_backoff
    )
    with pytest.raises(AssertionError, match=rf"\[4\] outbox row .*{SEND} to slack"):
        await check_invariants(
            store,
            now=clock.now() + max_backoff + SWEEP,
            sweep_interval=timedelta(hours=1),
            max_backoff=max_backoff,
        )


async def test_4_a_dead_row_without_an_error_is_caught(service, store, clock):
    """Invariant 4: a dead-lettered row must say why."""
    await service.create(CreateCommand(agent="a", action="x.y", title="t"))

    def _change(tx: WriteTx) -> None:
        tx.conn.execute(update(OUTBOX).values(state="dead", last_error=None))

    await store.run(_change)
    with pytest.raises(AssertionError, match="dead-lettered without an error"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_5_a_decision_the_agent_never_heard_of_is_caught(
    runtime, service, store, clock, adapters
):
    """Invariant 5: a final request missing from what reached the agent."""
    approved, _ = await _decided_and_delivered(runtime, adapters)
    with pytest.raises(AssertionError, match=rf"\[5\] request {approved.id} is approved"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP, delivered_to_agent=[])


async def test_5_a_decision_without_its_webhook_row_is_caught(service, store, clock):
    """Invariant 5: a request with a callback URL, final, but no webhook queued."""
    request = (
        await service.create(
            CreateCommand(
                agent="a", action="x.y", title="t", callback_url="http://127.0.0.1:9/hook"
            )
        )
    ).request
    await service.vote(VoteCommand(request.id, "slack", "U0ALICE", Verdict.APPROVE))
    await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)

    def _change(tx: WriteTx) -> None:
        tx.conn.execute(OUTBOX.delete().where(OUTBOX.c.kind == "webhook"))

    await store.run(_change)
    with pytest.raises(AssertionError, match="has 0 webhook rows, not 1"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP)


async def test_6_a_card_still_showing_pending_is_caught(runtime, service, store, clock, adapters):
    """Invariant 6: the platform's card of an approved request was never edited."""
    approved, _ = await _decided_and_delivered(runtime, adapters)
    stale = {approved.id: {"slack:channel:C0OPS": "pending"}}
    with pytest.raises(AssertionError, match="shows 'pending', but the request is approved"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP, cards=stale)
    with pytest.raises(AssertionError, match="was not found on the platform"):
        await check_invariants(store, now=clock.now(), sweep_interval=SWEEP, cards={})


@pytest.mark.parametrize(
    ("rendered", "status"),
    [
        ('{"text": "*Status:* Approved by alice at 2030-01-01 00:00 UTC"}', "approved"),
        ("<b>Status: </b><code>Denied: nobody decided before the deadline</code>", "denied"),
        ("Status\n**Expired**: nobody decided before the deadline", "expired"),
        ("Approved by the title, not the status. *Status:* Pending: waiting", "pending"),
        ("no status here", None),
    ],
)
def test_6_the_status_is_read_after_its_label(rendered, status):
    """Invariant 6: the status word is the one after the "Status" label, on every platform."""
    assert shown_status(rendered) == status
