"""The adapter contract: what every channel must do, checked the same way for each.

A channel (a chat platform, the web inbox) joins the contract with a test module that
subclasses :class:`AdapterContract` and provides a ``driver`` fixture: a
:class:`PlatformDriver` that starts the real adapter against the channel's fake platform
server on 127.0.0.1 and acts there as a person would (clicks a button, types a reason) or
as an attacker would (forges a click, replays one, clicks one card with another's button).
The cases then run on both stores (the root ``store`` fixture) with the same policies, the
same people and the same expectations. A new adapter is done when it passes.

Cases a channel cannot have are left out by its ``capabilities``: the web inbox posts no
messages, so it has no replies, no other card's button and no platform rate limits.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Protocol

import pytest

from approvals.audit import AuditEntry
from approvals.clock import ManualClock
from approvals.describe import DescribeTemplate
from approvals.directory import WEB_PLATFORM, Destination, Directory, Person
from approvals.machine import Status
from approvals.model import ApprovalRequest, CreateCommand, Verdict
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet, Risk, TimeoutOutcome
from approvals.ports import Adapter
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.waiting import wait_for
from tests.world import build_test_runtime

ALICE, BOB, CAROL = "alice", "bob", "carol"
"""The approvers of every contract policy. Carol is also the requester in the four-eyes case."""
STRANGER = "stranger"
"""Someone the directory does not know."""
MIN = timedelta(minutes=1)
TIMEOUT = 10 * MIN
REMIND_EVERY = 4 * MIN
RETRY_AFTER = timedelta(seconds=30)

PLAIN, WITH_REASON, QUORUM = "contract.plain", "contract.reason", "contract.quorum"
"""Actions of the three contract policies: one approval decides; a deny needs a reason;
two approvals decide."""
RATED = "contract.rated"
"""The action of the contract policy rated critical, with a describe line."""
RATED_DESCRIBE = "Deploy to {params.env}, run {params.run}"

POSTS, REPLIES, MESSAGES, RATE_LIMITS = "posts", "replies", "messages", "rate limits"
"""Capabilities: the channel posts cards as messages that are edited when decided; it posts
follow-ups (reminders) next to a card; a click names the message it was made on (so one
card can be clicked with another's button); sends can be refused with 429 or fail."""
CONFIRMS = "confirms"
"""Capability: the channel shows the confirmation an approval under a ``confirm`` policy
needs (a modal, a second button, a confirm page)."""
ALL_CAPABILITIES = frozenset({POSTS, REPLIES, MESSAGES, RATE_LIMITS, CONFIRMS})


@dataclass(frozen=True)
class Shown:
    """What a person sees of a request's card on the platform now: its text and the labels
    of the buttons on it."""

    text: str
    buttons: list[str]


class PlatformDriver(Protocol):
    """One channel's side of the contract: its real adapter, its fake platform, its people.

    Identities: ``identity(person)`` is the platform id of ``alice``, ``bob``, ``carol`` or
    ``stranger`` (whom the directory does not know).
    """

    platform: str
    notify: str
    """The notify target of the contract policies (a channel name, or ``web``)."""
    channels: dict[str, tuple[Destination, ...]]
    """The directory's channels: ``notify`` and where it posts."""

    def identity(self, person: str) -> str: ...

    async def start(self, runtime: Runtime) -> Adapter:
        """Start the real adapter with the runtime's service as its sink; return it."""

    async def stop(self) -> None: ...

    async def shown(self, request_id: str) -> Shown:
        """The request's card as the platform shows it now (as ``alice`` sees it)."""

    async def click(self, request_id: str, person: str, verdict: Verdict) -> None:
        """``person`` presses Approve or Deny (the plain button) on the request's card."""

    async def deny_with_reason(self, request_id: str, person: str, reason: str) -> None:
        """``person`` denies with a reason through the platform's form."""

    async def confirmation(self, request_id: str, person: str) -> Shown:
        """What ``person`` is shown after pressing Approve on a card whose policy needs
        approvals confirmed (waiting until it is there): its text and its buttons."""

    async def confirm(self, request_id: str, person: str) -> None:
        """``person`` confirms the approval the confirmation shown to them asks about."""

    async def forged_click(self, request_id: str, person: str) -> None:
        """An approve in ``person``'s name that the platform did not vouch for: a bad
        signature or token where the transport is signed, a click from outside the
        installation where it is not."""

    async def replay(self) -> None:
        """The last click arrives again, exactly as it was."""

    async def click_with_other_button(self, card_of: str, button_of: str, person: str) -> None:
        """``person`` approves on ``card_of``'s message with the button of ``button_of``."""

    async def notices(self, person: str) -> list[str]:
        """What ``person`` was told privately after their clicks, oldest first."""

    async def replies(self, request_id: str) -> list[str]:
        """The follow-ups posted next to the request's card, oldest first."""

    def fail_sends(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        """The platform answers the next ``times`` card posts with ``status``."""

    def posts(self) -> int:
        """How many cards the platform holds in the contract's channel."""


def contract_rules(driver: PlatformDriver) -> Rules:
    """The three contract policies, every card to the driver's notify target."""
    approvers = (ALICE, BOB, CAROL)

    def level() -> Level:
        return Level(
            approvers=approvers,
            notify=(driver.notify,),
            timeout=TIMEOUT,
            remind_every=REMIND_EVERY,
        )

    policies = PolicySet(
        (
            Policy(
                name="with-reason",
                match=Match(actions=(WITH_REASON,)),
                require_reason=True,
                levels=(level(),),
                on_timeout=TimeoutOutcome.DENY,
            ),
            Policy(
                name="quorum",
                match=Match(actions=(QUORUM,)),
                quorum=2,
                levels=(level(),),
                on_timeout=TimeoutOutcome.DENY,
            ),
            Policy(
                name="rated",
                match=Match(actions=(RATED,)),
                risk=Risk.CRITICAL,
                describe=DescribeTemplate.parse(RATED_DESCRIBE),
                levels=(level(),),
                on_timeout=TimeoutOutcome.DENY,
            ),
            Policy(name="plain", levels=(level(),), on_timeout=TimeoutOutcome.DENY),
        )
    )
    # The web inbox knows people by their names; every other platform by its own ids.
    on_platform = driver.platform != WEB_PLATFORM
    people = {
        name: Person(name, {driver.platform: driver.identity(name)} if on_platform else {})
        for name in approvers
    }
    directory = Directory(
        people=people,
        channels=driver.channels,
        platforms=frozenset({driver.platform}) - {WEB_PLATFORM},
    )
    return Rules(policies=policies, directory=directory)


@dataclass
class ContractWorld:
    """The service, the outbox and one started adapter, on one store, under a manual clock."""

    driver: PlatformDriver
    service: ApprovalService
    store: SqlStore
    clock: ManualClock
    dispatcher: OutboxDispatcher
    runs: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)

    async def create(self, action: str = PLAIN, *, requested_by: str | None = None) -> str:
        """A new request: each asks for its own ``run``, so none is answered with an
        identical one still pending."""
        outcome = await self.service.create(
            CreateCommand(
                agent="deploy-bot",
                action=action,
                title=f"Run {action}",
                params={"env": "prod", "run": next(self.runs)},
                requested_by=requested_by,
            )
        )
        assert isinstance(outcome, Created), outcome
        assert not outcome.reused, outcome
        return outcome.request.id

    async def posted(self, action: str = PLAIN, *, requested_by: str | None = None) -> str:
        """A new request whose card the outbox has delivered."""
        request_id = await self.create(action, requested_by=requested_by)
        await self.deliver()
        return request_id

    async def deliver(self) -> int:
        return await self.dispatcher.drain()

    async def request(self, request_id: str) -> ApprovalRequest:
        found = await self.service.get(request_id)
        assert found is not None
        return found

    def status_is(self, request_id: str, status: Status) -> Callable[[], Any]:
        async def check() -> bool:
            return (await self.request(request_id)).status is status

        return check

    def told(self, person: str, words: str) -> Callable[[], Any]:
        async def check() -> bool:
            return any(words in notice for notice in await self.driver.notices(person))

        return check

    async def refusals(self, request_id: str | None = None) -> list[AuditEntry]:
        async with self.store.read() as reader:
            entries = await reader.audit_entries(request_id=request_id)
        return [entry for entry in entries if entry.kind == "refused"]

    async def refused(self, code: str) -> bool:
        return any(json.loads(entry.data)["code"] == code for entry in await self.refusals())


Case = Callable[..., Coroutine[Any, Any, None]]


def needs(*capabilities: str) -> Callable[[Case], Case]:
    """Mark a case as needing channel capabilities; channels without them leave it out."""

    def mark(case: Case) -> Case:
        case.needs = frozenset(capabilities)  # type: ignore[attr-defined]
        return case

    return mark


class AdapterContract:
    """The contract's cases. Subclass it in a test module that provides ``driver``."""

    capabilities: ClassVar[frozenset[str]] = ALL_CAPABILITIES

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(AdapterContract):
            case = getattr(AdapterContract, name)
            missing: frozenset[str] = getattr(case, "needs", frozenset()) - cls.capabilities
            if name.startswith("test_") and missing:
                setattr(cls, name, None)  # not collected: the channel cannot have this case

    @pytest.fixture
    async def world(
        self, driver: PlatformDriver, store: SqlStore, clock: ManualClock
    ) -> AsyncIterator[ContractWorld]:
        runtime = build_test_runtime(
            store,
            clock,
            contract_rules(driver),
            web_inbox=driver.platform == WEB_PLATFORM,
        )
        adapter = await driver.start(runtime)
        runtime.dispatcher.use_adapter(driver.platform, adapter)
        try:
            yield ContractWorld(driver, runtime.service, store, clock, runtime.dispatcher)
        finally:
            await driver.stop()

    # -- cards ------------------------------------------------------------------------------

    async def test_post_shows_the_card_with_its_buttons(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        shown = await world.driver.shown(request_id)
        assert f"Run {PLAIN}" in shown.text
        assert any("Approve" in label for label in shown.buttons)
        assert any("Deny" in label for label in shown.buttons)

    async def test_the_card_shows_the_risk_and_the_describe_line_first(
        self, world: ContractWorld
    ) -> None:
        request_id = await world.posted(RATED)
        run = (await world.request(request_id)).params["run"]
        shown = await world.driver.shown(request_id)
        # Chat cards mark the label 🔴; the inbox colours it with CSS instead.
        label, line = "Critical risk", f"Deploy to prod, run {run}"
        assert label in shown.text
        assert line in shown.text
        assert shown.text.index(label) < shown.text.index(f"Run {RATED}")
        plain = await world.driver.shown(await world.posted())
        assert "risk" not in plain.text.lower()

    @needs(CONFIRMS)
    async def test_approve_under_a_confirm_policy_asks_first_and_only_the_confirmation_decides(
        self, world: ContractWorld
    ) -> None:
        request_id = await world.posted(RATED)  # rated critical: approvals need confirming
        run = (await world.request(request_id)).params["run"]

        await world.driver.click(request_id, ALICE, Verdict.APPROVE)
        shown = await world.driver.confirmation(request_id, ALICE)

        assert "Critical risk" in shown.text
        assert f"Deploy to prod, run {run}" in shown.text
        assert "env" in shown.text  # the params
        assert "prod" in shown.text
        assert any("Confirm" in label for label in shown.buttons)
        pending = await world.request(request_id)
        assert (pending.status, pending.votes) == (Status.PENDING, ())
        await world.driver.confirm(request_id, ALICE)
        await wait_for(world.status_is(request_id, Status.APPROVED))
        async with world.store.read() as reader:
            entries = await reader.audit_entries(request_id=request_id)
        decided = [json.loads(entry.data) for entry in entries if entry.kind == "decided"]
        assert [entry.get("confirmed") for entry in decided] == [True]

    async def test_approve_decides_and_the_card_shows_it(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        await world.driver.click(request_id, ALICE, Verdict.APPROVE)
        await wait_for(world.status_is(request_id, Status.APPROVED))
        decision = (await world.request(request_id)).decision
        assert decision is not None
        assert (decision.platform, decision.by) == (world.driver.platform, ALICE)
        await world.deliver()
        shown = await world.driver.shown(request_id)
        assert "Approved by alice" in shown.text
        assert shown.buttons == []

    async def test_deny_decides_and_the_card_shows_it(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        await world.driver.click(request_id, BOB, Verdict.DENY)
        await wait_for(world.status_is(request_id, Status.DENIED))
        await world.deliver()
        shown = await world.driver.shown(request_id)
        assert "Denied by bob" in shown.text
        assert shown.buttons == []

    async def test_deny_with_a_reason_records_the_reason(self, world: ContractWorld) -> None:
        request_id = await world.posted(WITH_REASON)
        await world.driver.deny_with_reason(request_id, BOB, "not during the freeze")
        await wait_for(world.status_is(request_id, Status.DENIED))
        decision = (await world.request(request_id)).decision
        assert decision is not None
        assert (decision.by, decision.reason) == (BOB, "not during the freeze")
        await world.deliver()
        shown = await world.driver.shown(request_id)
        assert "Denied by bob" in shown.text
        assert "not during the freeze" in shown.text

    @needs(REPLIES)
    async def test_a_reminder_is_posted_next_to_the_card(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        assert await world.driver.replies(request_id) == []
        world.clock.advance(REMIND_EVERY + timedelta(seconds=1))
        await world.service.process_due()
        await world.deliver()
        [reminder] = await world.driver.replies(request_id)
        assert "still waiting" in reminder.lower() or "reminder" in reminder.lower()

    # -- who may decide ---------------------------------------------------------------------

    async def test_two_approvals_make_a_quorum(self, world: ContractWorld) -> None:
        request_id = await world.posted(QUORUM)
        await world.driver.click(request_id, ALICE, Verdict.APPROVE)
        await wait_for(world.told(ALICE, "Your approval was counted"))
        assert (await world.request(request_id)).status is Status.PENDING
        await world.deliver()
        shown = await world.driver.shown(request_id)
        assert "1 of 2 approvals" in shown.text
        assert shown.buttons  # still open for the second person
        await world.driver.click(request_id, BOB, Verdict.APPROVE)
        await wait_for(world.status_is(request_id, Status.APPROVED))
        request = await world.request(request_id)
        assert sorted(vote.person for vote in request.votes) == [ALICE, BOB]

    async def test_a_stranger_is_refused_and_audited(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        await world.driver.click(request_id, STRANGER, Verdict.APPROVE)
        await wait_for(world.told(STRANGER, "not linked to anyone signoff knows"))
        request = await world.request(request_id)
        assert (request.status, list(request.votes)) == (Status.PENDING, [])
        assert await world.refused("unknown_identity")

    async def test_the_requester_may_not_decide(self, world: ContractWorld) -> None:
        request_id = await world.posted(requested_by=CAROL)
        await world.driver.click(request_id, CAROL, Verdict.APPROVE)
        await wait_for(world.told(CAROL, "someone else must decide it"))
        request = await world.request(request_id)
        assert (request.status, list(request.votes)) == (Status.PENDING, [])
        assert await world.refused("requester")

    async def test_a_click_after_the_deadline_meets_the_timeout(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        world.clock.advance(TIMEOUT + MIN)  # past the deadline, before any sweep
        await world.driver.click(request_id, ALICE, Verdict.APPROVE)
        await wait_for(world.told(ALICE, "denied"))
        request = await world.request(request_id)
        assert request.status is Status.DENIED
        assert request.decision is not None
        assert request.decision.by == "timeout"
        assert list(request.votes) == []

    # -- clicks signoff must not count ------------------------------------------------------

    async def test_a_forged_click_counts_nothing(self, world: ContractWorld) -> None:
        request_id = await world.posted()
        await world.driver.forged_click(request_id, ALICE)
        await world.driver.click(request_id, BOB, Verdict.DENY)  # a real click, after it
        await wait_for(world.status_is(request_id, Status.DENIED))
        decision = (await world.request(request_id)).decision
        assert decision is not None
        assert decision.by == BOB
        assert [vote.person for vote in (await world.request(request_id)).votes] == [BOB]

    async def test_a_replayed_click_counts_once(self, world: ContractWorld) -> None:
        request_id = await world.posted(QUORUM)
        await world.driver.click(request_id, ALICE, Verdict.APPROVE)
        await wait_for(world.told(ALICE, "Your approval was counted"))
        await world.driver.replay()
        # Had the replay counted, Alice alone would have made the quorum of two and Bob's
        # approval would meet a decided request. (An adapter may drop a replay it
        # recognises, or hand it on for the core to refuse as a second vote.)
        await world.driver.click(request_id, BOB, Verdict.APPROVE)
        await wait_for(world.status_is(request_id, Status.APPROVED))
        request = await world.request(request_id)
        assert [vote.person for vote in request.votes] == [ALICE, BOB]
        # Handled as a second vote, the replay is refused as one, not failed on the way.
        told = await world.driver.notices(ALICE)
        assert not any("try again" in notice.lower() for notice in told), told
        if len(told) > 1:
            assert "alice has already voted" in told[1], told

    @needs(MESSAGES)
    async def test_another_requests_button_on_a_card_counts_nothing(
        self, world: ContractWorld
    ) -> None:
        first = await world.posted()
        second = await world.posted()
        await world.driver.click_with_other_button(first, second, ALICE)
        await wait_for(world.told(ALICE, "not the card signoff posted for that request"))
        for request_id in (first, second):
            request = await world.request(request_id)
            assert (request.status, list(request.votes)) == (Status.PENDING, [])
        assert await world.refused("wrong_message")

    # -- delivery ---------------------------------------------------------------------------

    @needs(RATE_LIMITS)
    async def test_a_429_is_waited_out_then_the_card_is_posted(self, world: ContractWorld) -> None:
        world.driver.fail_sends(429, retry_after=int(RETRY_AFTER.total_seconds()))
        request_id = await world.posted()
        assert world.driver.posts() == 0
        world.clock.advance(RETRY_AFTER - timedelta(seconds=1))
        await world.posted()  # another card for the same channel, inside the wait
        assert world.driver.posts() == 0  # the whole channel waits, not just that card
        world.clock.advance(timedelta(seconds=2))
        await world.deliver()
        assert world.driver.posts() == 2
        assert f"Run {PLAIN}" in (await world.driver.shown(request_id)).text

    @needs(RATE_LIMITS)
    async def test_an_outage_loses_nothing(self, world: ContractWorld) -> None:
        world.driver.fail_sends(503, times=2)
        request_id = await world.posted()
        assert world.driver.posts() == 0
        for _ in range(2):
            world.clock.advance(MIN)  # past the outbox's backoff, well before the deadline
            await world.deliver()
        assert world.driver.posts() == 1
        await world.driver.click(request_id, ALICE, Verdict.APPROVE)
        await wait_for(world.status_is(request_id, Status.APPROVED))
