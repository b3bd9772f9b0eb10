"""Denial memory in Slack: bob denies a card with a reason, and the agent asking the same
thing again is answered at once with bob's no, without a second card in the channel."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from approvals.machine import Status
from approvals.policy import PolicySet
from approvals.service import Rules
from tests.adapters.slack.conftest import BOB, SlackWorld, slack_policies
from tests.waiting import wait_for
from tests.world import make_directory

PAYMENT = {"invoice": 7, "amount": 1200}


@pytest.fixture
def rules() -> Rules:
    """The Slack scenario policies, each remembering a denial for 30 minutes."""
    remembering = tuple(
        replace(policy, deny_repeat=timedelta(minutes=30)) for policy in slack_policies().policies
    )
    return Rules(policies=PolicySet(remembering), directory=make_directory())


async def test_a_repeat_of_a_request_denied_in_slack_is_denied_at_once(slack: SlackWorld):
    request_id, card = await slack.posted("pay.invoice", params=PAYMENT)
    await slack.fake.click(card, user=BOB, action_id="signoff_deny_reason")

    async def modal_opened() -> bool:
        return bool(slack.fake.views)

    await wait_for(modal_opened)
    await slack.fake.submit_view(slack.fake.views[0], user=BOB, reason="wrong supplier")

    async def denied() -> bool:
        return (await slack.get(request_id)).status is Status.DENIED

    await wait_for(denied)
    await slack.deliver()
    posted = len(slack.fake.calls_to("chat.postMessage"))

    repeat = await slack.create("pay.invoice", params=PAYMENT, title="Pay invoice 7 again")

    assert repeat.status is Status.DENIED
    assert repeat.decision is not None
    reason = repeat.decision.reason or ""
    assert reason.startswith(f"bob denied this same request ({request_id}) at ")
    assert '"wrong supplier"' in reason
    await slack.deliver()
    assert len(slack.fake.calls_to("chat.postMessage")) == posted  # nobody is asked again
