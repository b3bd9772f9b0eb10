"""Property-based: random votes, cancels, clock advances and restarts keep every invariant.

No sequence may yield two decisions for one request, a decision by a non-approver, a
self-approval (four-eyes), one person counted twice toward a quorum, or a final request
that changes again. The machine runs on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from approvals.audit import AuditKind
from approvals.clock import ManualClock
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Applied, Created
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from tests.world import _postgres_store, make_directory, make_policies, postgres_url

FINAL_KINDS = {AuditKind.DECIDED, AuditKind.EXPIRED, AuditKind.CANCELLED}

# (action, params): one per policy with people in it (see tests/conftest.make_policies).
ACTIONS = [
    ("db.migrate", {"env": "prod"}),  # quorum 2, reason to deny, escalates to carol
    ("deploy.web", {}),  # default: alice or bob
    ("cache.flush", {}),  # expires
    ("docs.publish", {}),  # approves on timeout
]
# Every identity some platform could send, strangers and mismatched platforms included.
IDENTITIES = [
    ("slack", "U0ALICE"),
    ("telegram", "100001"),
    ("discord", "200001"),
    ("web", "alice"),
    ("slack", "U0BOB"),
    ("telegram", "100002"),
    ("discord", "200003"),
    ("slack", "U0DAVE"),
    ("telegram", "100005"),
    ("slack", "U0MALLORY"),
    ("telegram", "U0ALICE"),
    ("web", "nobody"),
]


class ApprovalMachine(RuleBasedStateMachine):
    requests = Bundle("requests")

    def __init__(self, open_store) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.open_store = open_store
        self.clock = ManualClock()
        # Not `self.rules`: RuleBasedStateMachine keeps its own rules under that name.
        self.approval_rules = Rules(make_policies(), make_directory())
        self.store: SqlStore = self.run(open_store(True))
        self.service = ApprovalService(self.store, self.approval_rules, self.clock)
        self.final_status: dict[str, Status] = {}

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    @initialize(target=requests)
    def first_request(self):
        return self._create(1, None)

    @rule(
        target=requests,
        action=st.integers(0, len(ACTIONS) - 1),
        requester=st.sampled_from([None, "alice", "bob", "carol"]),
    )
    def create(self, action, requester):
        return self._create(action, requester)

    def _create(self, action_index, requester):
        action, params = ACTIONS[action_index]
        outcome = self.run(
            self.service.create(
                CreateCommand(
                    agent="deploy-bot",
                    action=action,
                    title="t",
                    params=params,
                    requested_by=requester,
                )
            )
        )
        assert isinstance(outcome, Created)
        return outcome.request.id

    @rule(
        request_id=requests,
        who=st.sampled_from(IDENTITIES),
        verdict=st.sampled_from(Verdict),
        reason=st.sampled_from([None, "", "because"]),
    )
    def vote(self, request_id, who, verdict, reason):
        before = self.run(self.service.get(request_id))
        platform, identity = who
        outcome = self.run(
            self.service.vote(VoteCommand(request_id, platform, identity, verdict, reason))
        )
        if isinstance(outcome, Applied):
            assert before.status is Status.PENDING

    @rule(platform=st.sampled_from(["slack", "telegram", "discord", "web"]))
    def same_person_votes_again(self, platform):
        """Someone who already voted on a pending request tries again, from any account."""
        pending = self.run(self.store_pending_with_votes())
        if not pending:
            return
        request = pending[0]
        request_id = request.id
        person = self.approval_rules.directory.people[request.votes[0].person]
        identity = person.identity_on(platform)
        if identity is None:
            return
        outcome = self.run(
            self.service.vote(VoteCommand(request_id, platform, identity, Verdict.APPROVE))
        )
        assert not isinstance(outcome, Applied), "a second vote by one person was applied"

    async def store_pending_with_votes(self):
        async with self.store.read() as reader:
            pending = await reader.list_requests(status=Status.PENDING, limit=10_000)
        return [request for request in pending if request.votes]

    @rule(request_id=requests, agent=st.sampled_from(["deploy-bot", "intruder"]))
    def cancel(self, request_id, agent):
        outcome = self.run(self.service.cancel(request_id, agent))
        if isinstance(outcome, Applied):
            assert agent == "deploy-bot"

    @rule(minutes=st.integers(0, 90))
    def advance_clock_and_sweep(self, minutes):
        self.clock.advance(timedelta(minutes=minutes))
        while self.run(self.service.process_due(limit=50)):
            pass

    @rule()
    def restart(self):
        self.run(self.store.close())
        self.store = self.run(self.open_store(False))
        self.service = ApprovalService(self.store, self.approval_rules, self.clock)

    @invariant()
    def invariants_hold(self):
        self.run(self._check())

    async def _check(self):
        async with self.store.read() as reader:
            requests = await reader.list_requests(limit=10_000)
            entries = await reader.audit_entries()
        finals: dict[str, int] = {}
        for entry in entries:
            if entry.kind in FINAL_KINDS:
                assert entry.request_id is not None
                finals[entry.request_id] = finals.get(entry.request_id, 0) + 1
        for request in requests:
            persons = [vote.person for vote in request.votes]
            assert len(persons) == len(set(persons)), "one person counted twice"
            allowed = request.policy.approvers_through(request.level)
            assert set(persons) <= allowed, "a non-approver's vote counted"
            assert request.requested_by not in persons, "the requester voted"
            if request.status.is_final:
                assert finals.get(request.id) == 1, "a final request needs exactly one decision"
                assert request.decision is not None
                assert request.next_due_at is None
                remembered = self.final_status.setdefault(request.id, request.status)
                assert remembered is request.status, "a final request changed"
                if request.status is Status.APPROVED and request.decision.by in persons:
                    assert len(request.approvals()) >= request.policy.quorum
                    assert request.decision.by not in (request.requested_by,)
            else:
                assert request.id not in finals
                assert request.next_due_at is not None
                assert request.next_due_at <= request.deadline
        assert (await self.store.verify_audit()).ok


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    store = SqlStore(f"sqlite:///{path}")

    async def migrate():
        await store.migrate()
        await store.close()

    asyncio.run(migrate())
    return path


def test_random_sequences_keep_invariants_on_sqlite(sqlite_template, tmp_path):
    counter = iter(range(1_000_000))

    def factory():
        path = tmp_path / f"run-{next(counter)}.db"
        shutil.copy(sqlite_template, path)

        async def open_store(_fresh):
            return SqlStore(f"sqlite:///{path}")

        return ApprovalMachine(open_store)

    # hypothesis takes any factory (its docstring says so), though it annotates type[...].
    run_state_machine_as_test(factory, settings=SETTINGS)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_random_sequences_keep_invariants_on_postgres():
    def factory():
        async def open_store(fresh):
            return await _postgres_store() if fresh else SqlStore(postgres_url())

        return ApprovalMachine(open_store)

    # hypothesis takes any factory (its docstring says so), though it annotates type[...].
    few = settings(SETTINGS, max_examples=10)
    run_state_machine_as_test(factory, settings=few)  # type: ignore[arg-type]
