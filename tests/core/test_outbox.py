"""The outbox dispatcher: per-destination order, retries, pauses, leases and dead letters."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Row, select

from approvals.audit import AuditEntry
from approvals.card import ApprovalCard
from approvals.clock import ManualClock
from approvals.directory import Destination
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher, RetryPolicy, SendPace
from approvals.outcomes import Applied, Created
from approvals.ports import DeliveryError, MessageRef
from approvals.service import REMIND, SEND, ApprovalService
from approvals.store import OutboxItem, SqlStore, WriteTx
from approvals.tables import DESTINATIONS, OUTBOX
from tests.fakes.recording import RecordingAdapter

SLACK_OPS = "slack:channel:C0OPS"
TELEGRAM_OPS = "telegram:channel:-1001234"
CAROL_DM = "discord:user:200003"
MS = timedelta(milliseconds=1)


@dataclass
class RefKeepingAdapter(RecordingAdapter):
    """A recording adapter that also keeps the message reference of every edit and reply."""

    refs: list[MessageRef] = field(default_factory=list)

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        await super().edit(ref, card)
        self.refs.append(ref)

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        await super().reply(ref, card, text)
        self.refs.append(ref)


@dataclass
class HangingAdapter(RecordingAdapter):
    """A platform that takes a send and never answers."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@dataclass
class SignallingAdapter(RecordingAdapter):
    """A recording adapter that signals each successful send."""

    sent: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        ref = await super().send(card, destination)
        self.sent.set()
        return ref


def deploy(title: str = "Deploy web") -> CreateCommand:
    """Default policy: one card to the ops Slack channel. The title is a param too, so
    each title makes a request of its own (an identical pending ask is reused)."""
    return CreateCommand(
        agent="deploy-bot", action="deploy.web", title=title, params={"title": title}
    )


def migrate(title: str = "Migrate prod") -> CreateCommand:
    """prod-db policy: cards to the ops Slack channel and the ops Telegram group; a request
    of its own for each title, as with :func:`deploy`."""
    return CreateCommand(
        agent="deploy-bot",
        action="db.migrate",
        title=title,
        params={"env": "prod", "title": title},
    )


async def create(service: ApprovalService, command: CreateCommand) -> str:
    outcome = await service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


async def outbox_rows(store: SqlStore, destination: str | None = None) -> list[Row[Any]]:
    query = select(OUTBOX).order_by(OUTBOX.c.id)
    if destination is not None:
        query = query.where(OUTBOX.c.destination == destination)
    async with store.read() as reader:
        return list((await reader.conn.execute(query)).all())


async def only_row(store: SqlStore, request_id: str, destination: str) -> Row[Any]:
    rows = [row for row in await outbox_rows(store, destination) if row.request_id == request_id]
    assert len(rows) == 1, rows
    return rows[0]


async def stored_ref(store: SqlStore, request_id: str, destination: str) -> dict[str, Any] | None:
    async with store.read() as reader:
        deliveries = await reader.deliveries(request_id)
    return next(d.ref for d in deliveries if d.destination == destination)


async def audit_of(store: SqlStore, request_id: str) -> list[AuditEntry]:
    async with store.read() as reader:
        return await reader.audit_entries(request_id=request_id)


def sent_ids(adapter: RecordingAdapter) -> list[str]:
    return [call.card.request_id for call in adapter.calls if call.kind == "send"]


# -- order ------------------------------------------------------------------------------------


async def test_sends_to_one_channel_arrive_in_creation_order(service, store, clock):
    slack, telegram = RecordingAdapter("slack"), RecordingAdapter("telegram")
    dispatcher = OutboxDispatcher(store, {"slack": slack, "telegram": telegram}, clock)
    ids = [await create(service, migrate(f"#{n}") if n % 2 else deploy(f"#{n}")) for n in range(7)]
    assert await dispatcher.drain() == 7 + 3
    assert sent_ids(slack) == ids
    assert sent_ids(telegram) == ids[1::2]
    assert {call.destination for call in slack.calls} == {SLACK_OPS}
    assert [row.state for row in await outbox_rows(store)] == ["sent"] * 10


async def test_only_the_head_row_of_each_destination_is_taken_per_round(service, store, clock):
    slack, telegram = RecordingAdapter("slack"), RecordingAdapter("telegram")
    dispatcher = OutboxDispatcher(store, {"slack": slack, "telegram": telegram}, clock)
    ids = [await create(service, migrate(f"#{n}")) for n in range(3)]
    for round_number in range(1, 4):
        assert await dispatcher.run_once() == 2
        assert sent_ids(slack) == ids[:round_number]
        assert sent_ids(telegram) == ids[:round_number]
    assert await dispatcher.run_once() == 0


async def test_rows_behind_a_retrying_head_wait_for_it(service, store, clock):
    slack = RecordingAdapter("slack", failures=[DeliveryError("503 Service Unavailable")])
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, rng=random.Random(1))
    ids = [await create(service, deploy(f"#{n}")) for n in range(3)]
    assert await dispatcher.drain() == 1
    assert slack.calls == []
    clock.advance(RetryPolicy().base_delay)
    assert await dispatcher.drain() == 3
    assert sent_ids(slack) == ids


# -- Retry-After ------------------------------------------------------------------------------


async def test_retry_after_pauses_the_destination_while_others_are_served(service, store, clock):
    retry_after = timedelta(seconds=30)
    slack = RecordingAdapter("slack", failures=[DeliveryError("429", retry_after=retry_after)])
    telegram = RecordingAdapter("telegram")
    dispatcher = OutboxDispatcher(store, {"slack": slack, "telegram": telegram}, clock)
    start = clock.now()
    first, second = await create(service, migrate("one")), await create(service, migrate("two"))

    assert await dispatcher.drain() == 3
    assert slack.calls == []
    assert sent_ids(telegram) == [first, second]
    async with store.read() as reader:
        paused = (await reader.conn.execute(select(DESTINATIONS))).all()
    assert {(row.key, row.not_before) for row in paused if row.key == SLACK_OPS} == {
        (SLACK_OPS, start + retry_after)
    }

    clock.set(start + retry_after - MS)
    third = await create(service, migrate("three"))
    assert await dispatcher.drain() == 1
    assert slack.calls == []
    assert sent_ids(telegram) == [first, second, third]

    clock.set(start + retry_after + MS)
    assert await dispatcher.drain() == 3
    assert sent_ids(slack) == [first, second, third]


async def test_retry_after_longer_than_max_delay_is_honoured(service, store, clock):
    retry_after = timedelta(minutes=10)
    slack = RecordingAdapter("slack", failures=[DeliveryError("429", retry_after=retry_after)])
    retry = RetryPolicy(max_delay=timedelta(seconds=10))
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, retry=retry)
    start = clock.now()
    request_id = await create(service, deploy())
    assert await dispatcher.drain() == 1
    assert (await only_row(store, request_id, SLACK_OPS)).next_attempt_at == start + retry_after
    clock.set(start + retry_after - MS)
    assert await dispatcher.drain() == 0
    clock.set(start + retry_after)
    assert await dispatcher.drain() == 1
    assert sent_ids(slack) == [request_id]


async def test_retry_after_on_a_row_dead_lettered_for_age_still_pauses_the_destination(
    service, store, clock
):
    retry = RetryPolicy(max_age=timedelta(hours=1))
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, retry=retry)
    old = await create(service, deploy("old"))
    clock.advance(timedelta(hours=1))
    fresh = await create(service, deploy("fresh"))
    slack.failures = [DeliveryError("429", retry_after=timedelta(seconds=30))]
    assert await dispatcher.run_once() == 1
    assert (await only_row(store, old, SLACK_OPS)).state == "dead"
    # The platform said "not before 30 s" for the whole channel: nothing may go there now.
    await dispatcher.drain()
    assert slack.calls == []
    clock.advance(timedelta(seconds=30))
    assert await dispatcher.drain() == 1
    assert sent_ids(slack) == [fresh]


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_delay_stays_within_half_and_full_of_the_capped_ceiling():
    retry = RetryPolicy(base_delay=timedelta(seconds=2), max_delay=timedelta(minutes=1))
    rng = random.Random(42)
    for attempts in (*range(1, 40), 1_000, 10**9):
        ceiling = min(retry.max_delay, retry.base_delay * 2 ** min(attempts - 1, 30))
        samples = [retry.delay(attempts, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in samples), attempts
        assert len(set(samples)) > 1, "the delay is jittered"


async def test_transient_failures_back_off_exponentially_up_to_max_delay(service, store, clock):
    retry = RetryPolicy(
        base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=20), max_age=timedelta(days=1)
    )
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(
        store, {"slack": slack}, clock, retry=retry, rng=random.Random(2030)
    )
    twin = random.Random(2030)
    request_id = await create(service, deploy())
    delays = []
    for attempt in range(1, 10):
        slack.failures = [DeliveryError("503 Service Unavailable")]
        assert await dispatcher.run_once() == 1
        row = await only_row(store, request_id, SLACK_OPS)
        assert (row.state, row.attempts, row.lease_until) == ("pending", attempt, None)
        assert row.last_error == "503 Service Unavailable"
        delay = row.next_attempt_at - clock.now()
        assert delay == retry.delay(attempt, twin)
        ceiling = min(retry.max_delay, retry.base_delay * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
        delays.append(delay)
        clock.set(row.next_attempt_at - MS)
        assert await dispatcher.run_once() == 0, "retried before its time"
        clock.set(row.next_attempt_at)
    assert delays[:6] == sorted(delays[:6])
    assert len(set(delays[:6])) == 6, "each doubling raises the delay"
    assert len(set(delays[5:])) > 1, "capped delays are still jittered"
    assert await dispatcher.run_once() == 1
    assert sent_ids(slack) == [request_id]
    row = await only_row(store, request_id, SLACK_OPS)
    assert (row.state, row.attempts) == ("sent", 9)


async def test_send_that_never_answers_is_given_up_and_retried(service, store, clock):
    slack = HangingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, lease=timedelta(milliseconds=40))
    request_id = await create(service, deploy())
    assert await dispatcher.run_once() == 1
    row = await only_row(store, request_id, SLACK_OPS)
    assert (row.state, row.attempts, row.lease_until) == ("pending", 1, None)
    assert row.last_error == "the platform did not answer in time"


# -- dead letters -----------------------------------------------------------------------------


async def test_permanent_error_dead_letters_at_once(service, store, clock, caplog):
    slack = RecordingAdapter("slack", failures=[DeliveryError("channel_not_found", permanent=True)])
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    lost, delivered = await create(service, deploy("lost")), await create(service, deploy("ok"))
    assert await dispatcher.drain() == 2
    lost_row = await only_row(store, lost, SLACK_OPS)
    assert (lost_row.state, lost_row.attempts, lost_row.last_error) == (
        "dead",
        0,
        "channel_not_found",
    )
    assert lost_row.finished_at == clock.now()
    assert sent_ids(slack) == [delivered]
    assert [(e.kind, e.actor, e.data) for e in await audit_of(store, lost)][1:] == [
        (
            "delivery_failed",
            "outbox",
            '{"destination":"slack:channel:C0OPS","error":"channel_not_found","kind":"send"}',
        )
    ]
    assert any(r.levelno == logging.ERROR and lost in r.getMessage() for r in caplog.records)
    clock.advance(timedelta(days=2))
    assert await dispatcher.drain() == 0


async def test_row_failing_past_max_age_is_dead_lettered_and_stops_blocking(
    service, store, clock, caplog
):
    retry = RetryPolicy(
        base_delay=timedelta(seconds=1),
        max_delay=timedelta(seconds=30),
        max_age=timedelta(minutes=2),
    )
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, retry=retry, rng=random.Random(5))
    start = clock.now()
    stuck, behind = await create(service, deploy("stuck")), await create(service, deploy("next"))
    tried_at = []
    for _attempt in range(50):
        slack.failures = [DeliveryError("502 Bad Gateway")]
        tried_at.append(clock.now())
        assert await dispatcher.run_once() == 1
        row = await only_row(store, stuck, SLACK_OPS)
        if row.state == "dead":
            break
        assert row.state == "pending"
        assert slack.calls == [], "nothing behind a retrying head is sent"
        clock.set(row.next_attempt_at)
    assert row.state == "dead"
    assert row.last_error == "502 Bad Gateway"
    assert len(tried_at) > 3
    assert tried_at[-2] - start < retry.max_age <= tried_at[-1] - start

    assert await dispatcher.drain() == 1
    assert sent_ids(slack) == [behind]
    failed = [e for e in await audit_of(store, stuck) if e.kind == "delivery_failed"]
    assert len(failed) == 1
    assert failed[0].at == tried_at[-1]
    assert '"error":"502 Bad Gateway"' in failed[0].data
    assert any(
        r.levelno == logging.ERROR and "dead-lettered" in r.getMessage() and stuck in r.getMessage()
        for r in caplog.records
    )
    verification = await store.verify_audit()
    assert verification.ok, verification


async def test_platform_without_adapter_dead_letters(service, store, clock):
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    request_id = await create(service, migrate())
    assert await dispatcher.drain() == 2
    assert sent_ids(slack) == [request_id]
    row = await only_row(store, request_id, TELEGRAM_OPS)
    assert (row.state, row.last_error) == ("dead", "no adapter for platform 'telegram'")
    failed = [e for e in await audit_of(store, request_id) if e.kind == "delivery_failed"]
    assert [e.data for e in failed] == [
        '{"destination":"telegram:channel:-1001234",'
        '"error":"no adapter for platform \'telegram\'","kind":"send"}'
    ]


async def test_edit_of_a_card_that_was_never_posted_is_skipped(service, store, clock):
    slack = RecordingAdapter("slack", failures=[DeliveryError("not_in_channel", permanent=True)])
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    request_id = await create(service, deploy())
    await dispatcher.drain()
    await service.vote(VoteCommand(request_id, "slack", "U0ALICE", Verdict.APPROVE))
    assert await dispatcher.drain() == 1
    assert slack.calls == []
    edit = (await outbox_rows(store))[-1]
    assert (edit.kind, edit.state, edit.last_error) == ("edit", "sent", "no posted card to update")


async def test_unknown_row_kind_dead_letters(service, store, clock):
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    request_id = await create(service, deploy())
    await dispatcher.drain()

    def _change(tx: WriteTx) -> None:
        tx.enqueue(request_id=request_id, destination=SLACK_OPS, kind="poke", at=clock.now())

    await store.run(_change)
    assert await dispatcher.drain() == 1
    row = (await outbox_rows(store))[-1]
    assert (row.state, row.last_error) == ("dead", "unknown outbox kind 'poke'")
    assert [call.kind for call in slack.calls] == ["send"]


# -- editing posted cards ---------------------------------------------------------------------


async def test_edit_after_decision_uses_the_stored_ref_and_drops_buttons(service, store, clock):
    slack = RefKeepingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    other = await create(service, deploy("other"))
    decided = await create(service, deploy("decided"))
    assert await dispatcher.drain() == 2
    ref = await stored_ref(store, decided, SLACK_OPS)
    assert ref == {"target": SLACK_OPS, "message": 2}
    assert await stored_ref(store, other, SLACK_OPS) == {"target": SLACK_OPS, "message": 1}

    clock.advance(timedelta(minutes=3))
    outcome = await service.vote(VoteCommand(decided, "slack", "U0BOB", Verdict.DENY, "not now"))
    assert isinstance(outcome, Applied)
    assert await dispatcher.drain() == 1
    assert [call.kind for call in slack.calls] == ["send", "send", "edit"]
    assert slack.refs == [MessageRef("slack", ref)]
    card = slack.calls[-1].card
    assert card.request_id == decided
    assert card.status is Status.DENIED
    assert card.buttons is False
    assert card.status_line == "Denied by bob at 2030-01-01 00:03 UTC (reason: not now)"


async def test_send_for_a_card_already_posted_edits_instead_of_posting_twice(service, store, clock):
    slack = RefKeepingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    request_id = await create(service, deploy())
    assert await dispatcher.drain() == 1
    ref = await stored_ref(store, request_id, SLACK_OPS)
    assert ref is not None

    # A re-run after a crash: the same send is queued again.
    def _change(tx: WriteTx) -> None:
        tx.enqueue(request_id=request_id, destination=SLACK_OPS, kind=SEND, at=clock.now())

    await store.run(_change)
    assert await dispatcher.drain() == 1
    assert [call.kind for call in slack.calls] == ["send", "edit"]
    assert slack.refs == [MessageRef("slack", ref)]
    assert await stored_ref(store, request_id, SLACK_OPS) == ref
    assert [row.state for row in await outbox_rows(store)] == ["sent", "sent"]


async def test_reminder_replies_next_to_each_posted_card(service, store, clock):
    slack, telegram = RefKeepingAdapter("slack"), RefKeepingAdapter("telegram")
    dispatcher = OutboxDispatcher(store, {"slack": slack, "telegram": telegram}, clock)
    request_id = await create(service, migrate())
    await dispatcher.drain()
    clock.advance(timedelta(minutes=5))
    assert await service.process_due() == 1
    assert [row.kind for row in await outbox_rows(store)][-2:] == [REMIND, REMIND]
    assert await dispatcher.drain() == 2
    for adapter, destination in ((slack, SLACK_OPS), (telegram, TELEGRAM_OPS)):
        assert [call.kind for call in adapter.calls] == ["send", "reply"]
        assert adapter.calls[-1].text == "Reminder: this request is still waiting for a decision."
        ref = await stored_ref(store, request_id, destination)
        assert ref is not None
        assert adapter.refs == [MessageRef(adapter.platform, ref)]


# -- leases, pacing, draining -----------------------------------------------------------------


async def test_expired_lease_lets_another_dispatcher_take_the_row(service, store, clock):
    lease = timedelta(seconds=60)
    hanging = HangingAdapter("slack")
    dying = OutboxDispatcher(store, {"slack": hanging}, clock, lease=lease)
    request_id = await create(service, deploy())
    claimed_at = clock.now()
    task = asyncio.create_task(dying.run_once())
    await hanging.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    slack = RecordingAdapter("slack")
    survivor = OutboxDispatcher(store, {"slack": slack}, clock, lease=lease)
    assert await survivor.run_once() == 0
    clock.set(claimed_at + lease - MS)
    assert await survivor.run_once() == 0
    assert slack.calls == []
    clock.set(claimed_at + lease + MS)
    assert await survivor.run_once() == 1
    assert sent_ids(slack) == [request_id]
    assert await stored_ref(store, request_id, SLACK_OPS) == {"target": SLACK_OPS, "message": 1}
    assert (await only_row(store, request_id, SLACK_OPS)).state == "sent"


async def test_min_send_interval_paces_sends_per_destination(service, store, clock):
    slack = RecordingAdapter("slack", min_send_interval=timedelta(seconds=1))
    telegram = RecordingAdapter("telegram")
    dispatcher = OutboxDispatcher(store, {"slack": slack, "telegram": telegram}, clock)
    ids = [await create(service, migrate(f"#{n}")) for n in range(3)]
    assert await dispatcher.drain() == 1 + 3
    assert sent_ids(slack) == ids[:1]
    assert sent_ids(telegram) == ids
    for sent in (2, 3):
        clock.advance(timedelta(seconds=1) - MS)
        assert await dispatcher.drain() == 0
        clock.advance(MS)
        assert await dispatcher.drain() == 1
        assert sent_ids(slack) == ids[:sent]


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=1)


def _paced(pace: SendPace, called_at: datetime, took_ms: int) -> datetime:
    answered_at = called_at + timedelta(milliseconds=took_ms)
    return pace.next_send_at("slack", called_at, answered_at, INTERVAL)


def test_send_pace_counts_from_the_answer_until_the_fastest_call_is_known():
    pace = SendPace(trusted_after=3)
    # The first calls pay for new connections: their message may have arrived just before
    # the answer, so the interval counts from the answer.
    assert _paced(pace, T0, 200) == T0 + timedelta(milliseconds=200) + INTERVAL
    assert _paced(pace, T0, 20) == T0 + timedelta(milliseconds=20) + INTERVAL


def test_send_pace_counts_from_the_call_plus_what_it_took_over_the_fastest():
    pace = SendPace(trusted_after=3)
    for took in (200, 20, 5):
        _paced(pace, T0, took)
    # A usual call: the interval counts from the call, plus the 0-3 ms over the fastest.
    assert _paced(pace, T0, 5) == T0 + INTERVAL
    assert _paced(pace, T0, 8) == T0 + INTERVAL + timedelta(milliseconds=3)
    # A slow call's message may have arrived late by what it took over the fastest.
    assert _paced(pace, T0, 405) == T0 + INTERVAL + timedelta(milliseconds=400)


def test_send_pace_forgets_old_calls_and_keeps_platforms_apart():
    pace = SendPace(remembered=2, trusted_after=1)
    _paced(pace, T0, 1)
    assert pace.next_send_at("telegram", T0, T0, INTERVAL) == T0 + INTERVAL
    _paced(pace, T0, 50)
    # The 1 ms call has left the two remembered: 50 ms is now the fastest.
    assert _paced(pace, T0, 60) == T0 + INTERVAL + timedelta(milliseconds=10)


async def test_drain_terminates_while_a_destination_keeps_failing(service, store, clock):
    failing = [DeliveryError("503 Service Unavailable") for _ in range(100)]
    slack = RecordingAdapter("slack", failures=failing)
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    assert await dispatcher.drain() == 0
    await create(service, deploy())
    assert await dispatcher.drain() == 1
    clock.advance(RetryPolicy().base_delay)
    # With no backoff at all the row is ready again at once; max_rounds still bounds the drain.
    eager = OutboxDispatcher(
        store, {"slack": slack}, clock, retry=RetryPolicy(base_delay=timedelta(0))
    )
    assert await eager.drain(max_rounds=5) == 5
    assert (await outbox_rows(store))[0].attempts == 6


async def test_web_destination_produces_no_outbox_rows(service, store, clock: ManualClock):
    dispatcher = OutboxDispatcher(store, {"slack": RecordingAdapter("slack")}, clock)
    outcome = await service.create(
        CreateCommand(agent="docs-bot", action="docs.publish", title="Publish the handbook")
    )
    assert isinstance(outcome, Created)
    assert outcome.request.policy.name == "lenient"
    await service.vote(VoteCommand(outcome.request.id, "web", "alice", Verdict.APPROVE))
    assert (await service.get(outcome.request.id)).status is Status.APPROVED
    assert await outbox_rows(store) == []
    async with store.read() as reader:
        assert await reader.deliveries(outcome.request.id) == []
    assert await dispatcher.drain() == 0


async def test_outbox_counts_rows_by_state(service, store, clock):
    slack = RecordingAdapter("slack", failures=[DeliveryError("gone", permanent=True)])
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    for n in range(3):
        await create(service, deploy(f"#{n}"))
    await dispatcher.run_once()
    await dispatcher.run_once()
    async with store.read() as reader:
        assert await reader.outbox_counts() == {"dead": 1, "sent": 1, "pending": 1}


async def test_two_dispatchers_share_the_outbox_without_sending_twice(service, store, clock):
    slack, telegram = RecordingAdapter("slack"), RecordingAdapter("telegram")
    adapters = {"slack": slack, "telegram": telegram}
    first, second = (OutboxDispatcher(store, adapters, clock) for _ in range(2))
    ids = [await create(service, migrate(f"#{n}")) for n in range(8)]
    handled = await asyncio.gather(first.drain(), second.drain())
    assert sum(handled) == 16
    assert sent_ids(slack) == ids
    assert sent_ids(telegram) == ids
    assert [row.state for row in await outbox_rows(store)] == ["sent"] * 16


# -- running in the background ----------------------------------------------------------------


async def test_run_forever_sends_when_woken_and_stops(service, store, clock, monkeypatch):
    slack = SignallingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    idle_round = asyncio.Event()
    claim = dispatcher._claim

    async def observed_claim(limit: int) -> list[OutboxItem]:
        claimed = await claim(limit)
        if not claimed:
            idle_round.set()  # the loop goes on to wait without yielding first
        return claimed

    monkeypatch.setattr(dispatcher, "_claim", observed_claim)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run_forever(stop, idle=60))
    try:
        await asyncio.wait_for(idle_round.wait(), timeout=5)
        request_id = await create(service, deploy())
        dispatcher.wake()
        await asyncio.wait_for(slack.sent.wait(), timeout=5)
        assert sent_ids(slack) == [request_id]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_wake_during_an_empty_round_is_not_lost(service, store, clock, monkeypatch):
    slack = SignallingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    claim = dispatcher._claim
    created: list[str] = []

    async def claim_raced_by_a_create(limit: int) -> list[OutboxItem]:
        claimed = await claim(limit)
        if not claimed and not created:
            # A request commits just after this round looked, and wakes the dispatcher.
            created.append(await create(service, deploy()))
            dispatcher.wake()
        return claimed

    monkeypatch.setattr(dispatcher, "_claim", claim_raced_by_a_create)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run_forever(stop, idle=30))
    try:
        await asyncio.wait_for(slack.sent.wait(), timeout=1)
        assert sent_ids(slack) == created
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_idle_dispatcher_sleeps_only_until_the_next_paced_row_is_due(service, store, clock):
    slack = RecordingAdapter("slack", min_send_interval=timedelta(milliseconds=100))
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    assert await dispatcher._idle_wait(0.5) == 0.5  # nothing queued: the full idle time

    for n in range(2):
        await create(service, deploy(f"#{n}"))
    assert await dispatcher.drain() == 1  # the second waits for the channel's pace

    assert await dispatcher._idle_wait(0.5) == pytest.approx(0.1)
    clock.advance(timedelta(milliseconds=40))
    assert await dispatcher._idle_wait(0.5) == pytest.approx(0.06)
    assert await dispatcher._idle_wait(0.05) == pytest.approx(0.05)  # never above idle
    clock.advance(timedelta(milliseconds=60))
    assert await dispatcher.drain() == 1
    assert await dispatcher._idle_wait(0.5) == 0.5


async def test_idle_dispatcher_wakes_for_a_retry(service, store, clock):
    slack = RecordingAdapter("slack", failures=[DeliveryError("503 Service Unavailable")])
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock, rng=random.Random(7))
    await create(service, deploy())
    assert await dispatcher.drain() == 1
    [row] = await outbox_rows(store)
    expected = (row.next_attempt_at - clock.now()).total_seconds()
    assert 0.5 <= expected <= 1.0  # the first retry: half to all of the 1 s base delay
    assert await dispatcher._idle_wait(5.0) == pytest.approx(expected)
