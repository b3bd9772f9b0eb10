"""A first end-to-end pass through the core: create, deliver, vote, decide, edit."""

from approvals.directory import Destination
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import AlreadyDecided, Applied, Created
from tests.fakes.recording import RecordingAdapter


async def test_default_policy_request_is_approved_and_cards_edited(service, store, clock):
    slack = RecordingAdapter("slack")
    dispatcher = OutboxDispatcher(store, {"slack": slack}, clock)
    created = await service.create(
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy web 1.2")
    )
    assert isinstance(created, Created)
    assert created.request.policy.name == "default"
    assert await dispatcher.drain() == 1
    assert slack.kinds() == [("send", Destination.from_key("slack:channel:C0OPS").key)]

    outcome = await service.vote(
        VoteCommand(created.request.id, "slack", "U0ALICE", Verdict.APPROVE)
    )
    assert isinstance(outcome, Applied)
    assert outcome.request.status is Status.APPROVED
    await dispatcher.drain()
    assert [k for k, _ in slack.kinds()] == ["send", "edit"]
    assert slack.calls[-1].card.buttons is False
    assert "alice" in slack.calls[-1].card.status_line

    again = await service.vote(VoteCommand(created.request.id, "slack", "U0BOB", Verdict.DENY))
    assert isinstance(again, AlreadyDecided)
    assert again.message.startswith("already approved by alice at ")
    verification = await store.verify_audit()
    assert verification.ok, verification
    async with store.read() as reader:
        kinds = [entry.kind for entry in await reader.audit_entries()]
    assert kinds == ["created", "delivered", "decided", "refused"]
    assert verification.checked == len(kinds)
