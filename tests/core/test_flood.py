"""The flood guard: past the per-minute cap, an agent's cards gather on one digest card."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from approvals.flood import CARDS_PER_MINUTE, WINDOW, is_digest_id
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Applied, Created
from approvals.service import REMIND, ApprovalService
from approvals.store import SqlStore
from approvals.tables import OUTBOX
from tests.fakes.recording import RecordedCall, RecordingAdapter

SLACK_OPS = "slack:channel:C0OPS"
TELEGRAM_OPS = "telegram:channel:-1001234"


async def create(
    service: ApprovalService, n: int, *, agent: str = "deploy-bot", **extra: Any
) -> str:
    """Request ``n`` of ``agent``: its own payload (``n`` is a param), so a request of its own."""
    fields: dict[str, Any] = {"action": "deploy.web", "params": {}} | extra
    fields["params"] = {**fields["params"], "n": n}
    outcome = await service.create(CreateCommand(agent=agent, title=f"Request {n}", **fields))
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


def digests(adapter: RecordingAdapter) -> list[RecordedCall]:
    return [call for call in adapter.calls if is_digest_id(call.card.request_id)]


def request_sends(adapter: RecordingAdapter) -> list[RecordedCall]:
    return [
        call
        for call in adapter.calls
        if call.kind == "send" and not is_digest_id(call.card.request_id)
    ]


async def test_cards_past_the_cap_gather_on_one_digest_that_follows_the_count(
    service: ApprovalService, store: SqlStore, clock
):
    slack = RecordingAdapter("slack")
    outbox = OutboxDispatcher(store, {"slack": slack}, clock)
    ids = [await create(service, n) for n in range(CARDS_PER_MINUTE + 5)]
    await outbox.drain()

    assert [call.card.request_id for call in request_sends(slack)] == ids[:CARDS_PER_MINUTE]
    [digest] = digests(slack)
    assert digest.kind == "send"
    assert digest.destination == SLACK_OPS
    assert digest.card.title == "5 more requests from agent deploy-bot are waiting"
    assert not digest.card.buttons
    assert digest.card.agent == "deploy-bot"

    # Another agent is not held back by this one's flood.
    other = await create(service, 99, agent="other-bot")
    # A gathered request decided anywhere leaves the digest, which is edited.
    outcome = await service.vote(VoteCommand(ids[-1], "slack", "U0ALICE", Verdict.APPROVE))
    assert isinstance(outcome, Applied)
    await outbox.drain()
    assert request_sends(slack)[-1].card.request_id == other
    assert [call.kind for call in digests(slack)] == ["send", "edit"]
    assert digests(slack)[-1].card.title == "4 more requests from agent deploy-bot are waiting"

    # A minute on, the agent's cards are posted one by one again.
    clock.advance(WINDOW + timedelta(seconds=1))
    later = await create(service, 100)
    await outbox.drain()
    assert request_sends(slack)[-1].card.request_id == later
    assert len(digests(slack)) == 2


async def test_gathered_requests_get_no_reminders_and_their_timeouts_empty_the_digest(
    service: ApprovalService, store: SqlStore, clock
):
    # prod-db: cards to the Slack and the Telegram channel, a reminder every 5 minutes.
    slack, telegram = RecordingAdapter("slack"), RecordingAdapter("telegram")
    discord = RecordingAdapter("discord")
    outbox = OutboxDispatcher(
        store, {"slack": slack, "telegram": telegram, "discord": discord}, clock
    )
    prod: dict[str, Any] = {"action": "db.migrate", "params": {"env": "prod"}}
    for n in range(CARDS_PER_MINUTE + 2):
        await create(service, n, **prod)
    await outbox.drain()
    for adapter in (slack, telegram):
        assert len(request_sends(adapter)) == CARDS_PER_MINUTE
        assert digests(adapter)[-1].card.title.startswith("2 more requests")

    clock.advance(timedelta(minutes=5))
    while await service.process_due():
        pass
    async with store.read() as reader:
        reminders = (
            await reader.conn.execute(select(OUTBOX.c.request_id).where(OUTBOX.c.kind == REMIND))
        ).all()
    assert len(reminders) == 2 * CARDS_PER_MINUTE  # the carded ones, on both platforms
    await outbox.drain()
    assert all(call.kind != "reply" for call in digests(slack) + digests(telegram))

    # Past both levels (15 min, then 1 h): every request is denied, the digests say so.
    clock.advance(timedelta(minutes=15))
    while await service.process_due():
        pass
    clock.advance(timedelta(hours=1))
    while await service.process_due():
        pass
    await outbox.drain()
    for adapter in (slack, telegram):
        last = digests(adapter)[-1]
        assert last.kind == "edit"
        assert last.card.title == "No more requests from agent deploy-bot are waiting here"
    async with store.read() as reader:
        pending = (await reader.conn.execute(select(OUTBOX).where(OUTBOX.c.state != "sent"))).all()
    assert pending == []
