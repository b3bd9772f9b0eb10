"""What every chat platform's scenario world shares: the runtime's service, store and outbox,
and the helpers that do not depend on the platform (create, deliver, read back)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from approvals.audit import AuditEntry
from approvals.clock import Clock
from approvals.describe import DescribeTemplate
from approvals.machine import Status
from approvals.model import ApprovalRequest, CreateCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet, Risk, TimeoutOutcome
from approvals.service import ApprovalService
from approvals.store import SqlStore


@dataclass
class ChatWorld:
    """A started adapter's world; a platform's world adds its fake and its card reading."""

    service: ApprovalService
    store: SqlStore
    clock: Clock
    dispatcher: OutboxDispatcher
    runs: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)

    async def create(
        self, action: str = "deploy.web", params: dict[str, Any] | None = None, **extra: Any
    ) -> ApprovalRequest:
        """A new request from ``deploy-bot`` (``agent=`` another), titled ``Run <action>``.

        Without ``params`` each asks for its own ``run``, so none is answered with an
        identical one still pending."""
        outcome = await self.service.create(
            CreateCommand(
                agent=extra.pop("agent", "deploy-bot"),
                action=action,
                title=extra.pop("title", f"Run {action}"),
                params={"env": "prod", "run": next(self.runs)} if params is None else params,
                **extra,
            )
        )
        assert isinstance(outcome, Created), outcome
        assert not outcome.reused, outcome
        return outcome.request

    async def deliver(self) -> int:
        """Send everything the outbox holds (cards, edits, replies) to the fake."""
        return await self.dispatcher.drain()

    async def ref(self, request_id: str, destination: str) -> dict[str, Any]:
        """Where the request's card was posted at ``destination`` (its message reference)."""
        async with self.store.read() as reader:
            deliveries = await reader.deliveries(request_id)
        for delivery in deliveries:
            if delivery.destination == destination and delivery.ref:
                return delivery.ref
        raise AssertionError(f"no posted card for {request_id} at {destination}")

    async def get(self, request_id: str) -> ApprovalRequest:
        request = await self.service.get(request_id)
        assert request is not None
        return request

    def status_is(self, request_id: str, status: Status) -> Callable[[], Any]:
        async def check() -> bool:
            return (await self.get(request_id)).status is status

        return check

    async def audit(self, request_id: str | None = None) -> list[AuditEntry]:
        async with self.store.read() as reader:
            return await reader.audit_entries(request_id=request_id)

    async def refusals(self, code: str) -> list[AuditEntry]:
        return [e for e in await self.audit() if e.kind == "refused" and f'"{code}"' in e.data]


MIN = timedelta(minutes=1)


WIRE_DESCRIBE = "Wire {params.amount} EUR to {params.iban}"
"""The describe line of the scenarios' ``wire`` policy (its approvals need confirming)."""
WIRE = {"amount": 1200, "iban": "DE89370400440532013000"}
"""Params of a ``wire.*`` request: the confirmation shows them."""


def scenario_policies(
    channel: str,
    *,
    pair: tuple[str, ...],
    first: str,
    escalation: str,
    everyone: tuple[str, ...],
) -> PolicySet:
    """The policies of a platform's scenarios, every card to ``channel`` (or to DMs):

    - ``two-person`` (``db.*``): a quorum of two from ``pair``, a deny needs a reason;
    - ``escalating`` (``infra.*``): ``first`` for 10 minutes with a reminder every 4, then
      ``escalation`` by DM for 30; denied on timeout;
    - ``wire`` (``wire.*``): rated critical, so one of ``everyone`` approves only with a
      confirmation (:data:`WIRE_DESCRIBE` is its describe line);
    - ``default``: one of ``everyone`` within 30 minutes; denied on timeout.
    """
    return PolicySet(
        (
            Policy(
                name="wire",
                match=Match(actions=("wire.*",)),
                risk=Risk.CRITICAL,
                describe=DescribeTemplate.parse(WIRE_DESCRIBE),
                levels=(Level(approvers=everyone, notify=(channel,), timeout=30 * MIN),),
            ),
            Policy(
                name="two-person",
                match=Match(actions=("db.*",)),
                quorum=2,
                require_reason=True,
                levels=(Level(approvers=pair, notify=(channel,), timeout=15 * MIN),),
            ),
            Policy(
                name="escalating",
                match=Match(actions=("infra.*",)),
                levels=(
                    Level(
                        approvers=(first,),
                        notify=(channel,),
                        timeout=10 * MIN,
                        remind_every=4 * MIN,
                    ),
                    Level(approvers=(escalation,), notify=("dm",), timeout=30 * MIN),
                ),
                on_timeout=TimeoutOutcome.DENY,
            ),
            Policy(
                name="default",
                levels=(Level(approvers=everyone, notify=(channel,), timeout=30 * MIN),),
                on_timeout=TimeoutOutcome.DENY,
            ),
        )
    )


async def numbered_requests(service: ApprovalService, count: int) -> list[ApprovalRequest]:
    """``count`` new ``deploy.web`` requests from ``deploy-bot``, ``Deploy 0`` on, each
    asking with its own number (``{"n": n}``)."""
    made = []
    for n in range(count):
        outcome = await service.create(
            CreateCommand("deploy-bot", "deploy.web", f"Deploy {n}", params={"n": n})
        )
        assert isinstance(outcome, Created), outcome
        assert outcome.is_new
        made.append(outcome.request)
    return made
