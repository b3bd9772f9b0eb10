"""The approval service: create, vote, cancel and deadline handling, exactly once.

Each command reads the request, decides with pure rules, and commits one conditional write
together with its audit entry and the outbox rows it causes. Outcomes are values
(:mod:`approvals.outcomes`); exceptions mean infrastructure trouble or bugs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError

from approvals import flood
from approvals.audit import AuditKind
from approvals.card import ApprovalCard, build_card
from approvals.clicks import (
    MALFORMED_CLICK,
    WRONG_MESSAGE,
    Click,
    ClickOutcome,
    ClickRefused,
    ConfirmPrompt,
    ReasonPrompt,
    RecentCards,
    is_card_of,
)
from approvals.clock import Clock, ElapsedClock
from approvals.clocksteps import ClockStepWatch, follow_step
from approvals.confirm import (
    ConfirmationKey,
    confirmation_expiry,
    confirmation_is_valid,
    sign_confirmation,
)
from approvals.crashpoints import CrashPoint, crash_point
from approvals.deadlines import (
    DeadlineStep,
    Escalate,
    Remind,
    TimeOut,
    next_due,
    plan_step,
    schedule_after,
)
from approvals.directory import Directory
from approvals.edits import edited_params_problem
from approvals.grants import (
    Grant,
    GrantRevoked,
    approval_reason,
    grant_id_for,
    grant_length,
    grant_length_problem,
    stale_because,
)
from approvals.links import DecisionLinks
from approvals.log_context import about_request
from approvals.machine import Event, Status, next_status
from approvals.model import (
    GRANT_PLATFORM,
    MAX_REASON_LENGTH,
    SYSTEM_PLATFORM,
    ApprovalRequest,
    CastVote,
    CreateCommand,
    Decision,
    LinkUse,
    Verdict,
    VoteCommand,
    new_request_id,
)
from approvals.outcomes import (
    AlreadyDecided,
    Applied,
    Created,
    NotAllowed,
    NotFound,
    Outcome,
    RefusalCode,
)
from approvals.policy import AutoDecision, Policy, PolicySet, TimeoutOutcome
from approvals.server_secret import ServerSecret
from approvals.store import ConcurrentUpdateError, QueuedMessage, SqlStore, SyncReads, WriteTx
from approvals.store import grants as grant_rows
from approvals.store import links as link_rows
from approvals.webhooks import new_event_id, webhook_destination
from signoff_client.canonical import CanonicalJsonError, payload_sha256

log = logging.getLogger(__name__)

SEND = "send"
EDIT = "edit"
REMIND = "remind"
WEBHOOK = "webhook"
DIGEST = flood.DIGEST
"""Outbox row kinds: post a new card, re-render a posted card, reply next to a card, post
the final state to the agent's callback URL, and post or re-render a digest card (see
:mod:`approvals.flood`)."""

TIMEOUT_ACTOR = "timeout"
SWEEP_RETRY_DELAY = timedelta(minutes=1)
_MAX_ATTEMPTS = 5

_TIMEOUT_EVENTS = {
    TimeoutOutcome.DENY: Event.DENY,
    TimeoutOutcome.APPROVE: Event.APPROVE,
    TimeoutOutcome.EXPIRE: Event.EXPIRE,
}
_FINAL_AUDIT_KIND = {
    Status.APPROVED: AuditKind.DECIDED,
    Status.DENIED: AuditKind.DECIDED,
    Status.EXPIRED: AuditKind.EXPIRED,
    Status.CANCELLED: AuditKind.CANCELLED,
}

ChangeListener = Callable[[ApprovalRequest], None]


@dataclass(frozen=True)
class Rules:
    """The config the service decides with; swapped whole on reload."""

    policies: PolicySet
    directory: Directory


def _transition(
    request: ApprovalRequest,
    event: Event,
    now: datetime,
    *,
    decision: Decision | None = None,
    **changes: object,
) -> ApprovalRequest:
    """The request after ``event``: new status from the table, version bumped."""
    status = next_status(request.status, event)
    if status.is_final:
        assert decision is not None, "a final transition needs its decision"
        changes.update(decision=decision, decided_at=now, next_due_at=None, next_remind_at=None)
    return replace(request, status=status, version=request.version + 1, **changes)  # type: ignore[arg-type]


def _repeat_denial_reason(earlier: ApprovalRequest, policy: Policy) -> str:
    """Why a repeated ask was denied at once: the earlier denial (who, when, which request,
    their reason) and until when the policy remembers it."""
    assert earlier.decision is not None
    assert earlier.decided_at is not None
    assert policy.deny_repeat is not None
    decision = earlier.decision
    said = f': "{decision.reason}"' if decision.reason else " (no reason given)"
    until = earlier.decided_at + policy.deny_repeat
    return (
        f"{decision.by} denied this same request ({earlier.id}) at "
        f"{_utc_time(earlier.decided_at)}{said}. Policy {policy.name} denies it again at "
        f"once until {_utc_time(until)} (deny_repeat)."
    )


def _utc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def judge_vote(request: ApprovalRequest, command: VoteCommand, rules: Rules) -> Outcome | str:
    """Apply the who-may-decide rules. Returns a refusal outcome, or the voting person's name."""
    person = rules.directory.person_for(command.platform, command.identity)
    if person is None:
        return NotAllowed(
            RefusalCode.UNKNOWN_IDENTITY,
            f"your {command.platform} account is not linked to anyone signoff knows",
        )
    if request.status.is_final:
        return AlreadyDecided(request)
    requester = rules.directory.requester_match(request.requested_by)
    if person.name == requester.exact:
        return NotAllowed(
            RefusalCode.REQUESTER,
            "this request was made on your behalf, so someone else must decide it",
        )
    if person.name in requester.lookalikes:
        # Fail closed: a name that only looks like this person's may still mean them.
        return NotAllowed(
            RefusalCode.REQUESTER,
            f"this request is for {requester.shown(request.requested_by)}, which looks like "
            f"{person.name}, so someone else must decide it",
        )
    if person.name not in request.policy.approvers_through(request.level):
        return NotAllowed(
            RefusalCode.NOT_AN_APPROVER,
            f"{person.name} is not an approver for this request at its current level",
        )
    live = rules.policies.named(request.policy.name)
    if live is not None and person.name not in live.approvers_through(len(live.levels) - 1):
        # The snapshot grants, the current config may revoke: someone taken out of the
        # policy's approvers since the request was made no longer decides it.
        return NotAllowed(
            RefusalCode.NOT_AN_APPROVER,
            f"{person.name} is no longer an approver of policy {live.name}",
        )
    if any(vote.person == person.name for vote in request.votes):
        return NotAllowed(RefusalCode.ALREADY_VOTED, f"{person.name} has already voted")
    if command.reason is not None and len(command.reason) > MAX_REASON_LENGTH:
        return NotAllowed(
            RefusalCode.INVALID, f"the reason is longer than {MAX_REASON_LENGTH} characters"
        )
    if command.reason is not None and "\x00" in command.reason:
        return NotAllowed(RefusalCode.INVALID, "the reason must not contain NUL characters")
    needs_reason = command.verdict is Verdict.DENY and request.policy.require_reason
    if needs_reason and not (command.reason and command.reason.strip()):
        return NotAllowed(RefusalCode.REASON_REQUIRED, "this policy needs a reason to deny")
    return person.name


@dataclass(frozen=True)
class ProposedEdit:
    """An approval with edits, checked: the params the person approves and their hash."""

    params: dict[str, Any]
    payload_sha256: str


def judge_payload(
    request: ApprovalRequest, command: VoteCommand
) -> ProposedEdit | NotAllowed | None:
    """Check what payload a vote is about (after :func:`judge_vote` let the person vote).

    An approval counts only for the payload the person saw: a page that showed another
    proposal than the current one (someone edited meanwhile) is refused, never counted
    for what the person did not see, and the person may decide again on the new page. A
    chat card shows the original params, so once they are edited its Approve is refused
    and the person is sent to the inbox. A deny needs no such check: denying any version
    of the request denies it. Returns the checked edit, ``None`` for a plain vote, or the
    refusal.
    """
    if command.verdict is Verdict.DENY:
        return (
            None
            if command.edited_params is None
            else NotAllowed(RefusalCode.INVALID, "only an approval can carry edited params")
        )
    shown = command.shown_payload_sha256
    if shown is None and request.edited_payload_sha256 is not None:
        return NotAllowed(
            RefusalCode.STALE_PROPOSAL,
            "an approver edited this request's params; review the edited proposal in the "
            "signoff inbox and approve it there",
        )
    if shown is not None and shown != request.proposal_sha256:
        return NotAllowed(
            RefusalCode.STALE_PROPOSAL,
            "the params changed since your page showed them (an approver edited them); "
            "nothing was recorded: review the current proposal and decide again",
        )
    if command.edited_params is None:
        return None
    if not request.policy.allows_edits:
        return NotAllowed(
            RefusalCode.EDITS_FORBIDDEN,
            f"policy {request.policy.name} does not allow editing params; approve or deny "
            "them as asked",
        )
    problem = edited_params_problem(command.edited_params)
    if problem is not None:
        return NotAllowed(RefusalCode.INVALID, problem)
    try:
        digest = payload_sha256(request.action, command.edited_params)
    except CanonicalJsonError as exc:
        return NotAllowed(RefusalCode.INVALID, f"the edited params are not plain JSON: {exc}")
    if digest == request.proposal_sha256:
        return None  # unchanged: a plain approval of what was shown
    return ProposedEdit(dict(command.edited_params), digest)


def judge_grant(
    request: ApprovalRequest, command: VoteCommand, rules: Rules, edit: ProposedEdit | None
) -> NotAllowed | None:
    """Check an approval *for a while* ("Approve for 1 h"), after the vote itself was
    judged: the policy (as configured now) must allow grants that long, and a grant only
    ever covers the agent's own params, never an approver's edit of them."""
    if command.grant_for is None:
        return None
    if command.verdict is Verdict.DENY:
        return NotAllowed(RefusalCode.INVALID, "only an approval can be given for a while")
    live = rules.policies.named(request.policy.name)
    problem = grant_length_problem(
        live.grants if live else None, request.policy.name, command.grant_for
    )
    if problem is not None:
        return NotAllowed(RefusalCode.GRANTS_FORBIDDEN, problem)
    if edit is not None or request.edited_payload_sha256 is not None:
        return NotAllowed(
            RefusalCode.GRANTS_FORBIDDEN,
            "a grant covers only the params the agent asked for, and these were edited; "
            "approve without a grant",
        )
    return None


def _edit_audit(
    request: ApprovalRequest, vote: CastVote, edit: ProposedEdit | None
) -> dict[str, object]:
    """What a vote's audit entry adds when edits are involved: both hashes, and the edit."""
    data: dict[str, object] = {
        "payload_sha256": vote.payload_sha256,
        "original_payload_sha256": request.payload_sha256,
    }
    if edit is not None:
        data.update(edited_payload_sha256=edit.payload_sha256, edited_params=edit.params)
    return data


class ApprovalService:
    """Commands on approval requests. One instance per process; safe to call concurrently."""

    def __init__(self, store: SqlStore, rules: Rules, clock: Clock) -> None:
        self._store = store
        self._rules = rules
        self._clock = clock
        self.recent_cards = RecentCards()
        """Cards just posted by this process, before their references are stored; the
        outbox tells it (see :class:`approvals.clicks.RecentCards`)."""
        secret = ServerSecret(store, clock)
        self.links = DecisionLinks(store, clock, secret)
        """Makes and reads the signed decision links an email's Approve / Deny carry."""
        self._confirmation_key = ConfirmationKey(secret)
        self._listeners: list[ChangeListener] = []
        self._clock_steps = ClockStepWatch(clock) if isinstance(clock, ElapsedClock) else None
        self._following_step = asyncio.Lock()

    @property
    def rules(self) -> Rules:
        return self._rules

    @property
    def store(self) -> SqlStore:
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    def reconfigure(self, rules: Rules) -> None:
        """Use new config for new commands. Requests in flight keep their policy snapshot."""
        self._rules = rules

    def subscribe(self, listener: ChangeListener) -> None:
        """Call ``listener`` after each committed change (wakes long-polls and the scheduler)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: ChangeListener) -> None:
        self._listeners.remove(listener)

    @property
    def listeners(self) -> tuple[ChangeListener, ...]:
        return tuple(self._listeners)

    def _announce(self, request: ApprovalRequest) -> None:
        with about_request(request.id):
            log.info("request %s %s", request.id, _change_summary(request))
            for listener in list(self._listeners):
                try:
                    listener(request)
                except Exception:
                    log.exception("change listener failed for request %s", request.id)

    async def get(self, request_id: str) -> ApprovalRequest | None:
        return await self._store.get_request(request_id)

    def card_for(self, request: ApprovalRequest, note: str | None = None) -> ApprovalCard:
        """The request's card as every channel shows it, with what the configured people
        make it say (a requester who only looks like an approver)."""
        requester = self._rules.directory.requester_match(request.requested_by)
        return build_card(request, note=note, warning=requester.note(request.requested_by))

    async def card(self, request_id: str) -> ApprovalCard | None:
        """The request's card as it stands now (what adapters may read), or ``None``."""
        request = await self._store.get_request(request_id)
        return None if request is None else self.card_for(request)

    async def follow_clock_steps(self) -> None:
        """If the wall clock was stepped since the last look, move the stored times with it
        before anything is decided by the clock (:mod:`approvals.clocksteps`)."""
        watch = self._clock_steps
        if watch is None or watch.look() is None:
            return
        async with self._following_step:
            step = watch.look()
            if step is None:
                return  # another caller followed it meanwhile
            moved = await self._store.run(lambda tx: follow_step(tx, step))
            watch.followed(step)
        if moved is None:
            log.info("the wall clock was stepped by %s; another process followed it", step.size)
        else:
            log.warning(
                "the wall clock was stepped by %s; %s pending requests keep the real time they "
                "had left",
                step.size,
                moved,
            )

    def _clock_stepped(self) -> bool:
        """Whether the wall clock was stepped since the last look. Checked right after a
        command reads the time, so that a step since the last follow is never acted on."""
        return self._clock_steps is not None and self._clock_steps.look() is not None

    # -- create -----------------------------------------------------------------------------

    async def create(self, command: CreateCommand) -> Created | NotAllowed:
        """Create a request under the first matching policy; auto decisions apply at once."""
        problem = _invalid_create(command)
        if problem is not None:
            return NotAllowed(RefusalCode.INVALID, problem)
        try:
            digest = payload_sha256(command.action, command.params)
        except CanonicalJsonError as exc:
            return NotAllowed(RefusalCode.INVALID, f"params are not plain JSON: {exc}")
        rules = self._rules
        policy = rules.policies.select(command.action, command.agent, command.params)
        now = self._clock.now()
        request = ApprovalRequest(
            id=command.request_id or new_request_id(),
            agent=command.agent,
            action=command.action,
            title=command.title,
            details=command.details,
            params=command.params,
            payload_sha256=digest,
            requested_by=command.requested_by,
            policy=policy,
            status=Status.PENDING,
            level=0,
            created_at=now,
            deadline=now + policy.timeout_for(command.timeout),
            next_due_at=None,
            next_remind_at=None,
            callback_url=command.callback_url,
        )
        if policy.decision is AutoDecision.ASK:
            plan = schedule_after(request, 0, now)
            request = replace(
                request, next_due_at=plan.next_due_at, next_remind_at=plan.next_remind_at
            )
        try:
            created = await self._store.run(
                lambda tx: self._write_new_request(tx, command, request, rules, now)
            )
        except IntegrityError:
            if command.idempotency_key is not None:
                # A concurrent call with the same key won the race: answer as its replay.
                replay = await self._replay(command)
                if replay is not None:
                    return replay
            return NotAllowed(RefusalCode.INVALID, f"a request with id {request.id!r} exists")
        if isinstance(created, NotAllowed) or not created.is_new:
            return created
        crash_point(CrashPoint.AFTER_CREATE_COMMIT)
        self._announce(created.request)
        return created

    def _write_new_request(
        self,
        tx: WriteTx,
        command: CreateCommand,
        request: ApprovalRequest,
        rules: Rules,
        now: datetime,
    ) -> Created | NotAllowed:
        """The create command: the request, its audit entry, and its cards or its automatic
        decision, in the writer's batch. The API key's check and an idempotent replay are
        read in the same transaction: no read of their own before the write."""
        if command.agent_key_id is not None and not tx.agent_key_is_live(
            command.agent_key_id, command.agent
        ):
            return NotAllowed(RefusalCode.KEY_REVOKED, "the API key is unknown or revoked")
        if command.idempotency_key is not None:
            replay = self._recorded_replay(tx, command)
            if replay is not None:
                return replay
        policy = request.policy
        slot_claimed = False
        open_now = None
        if command.max_open is not None:
            if policy.decision is AutoDecision.ASK:
                open_now = tx.claim_open_slot(command.agent, command.max_open)
                slot_claimed = open_now is None
            else:  # decided at once, so it takes no slot; the cap still applies
                count = tx.count_open(command.agent)
                open_now = count if count >= command.max_open else None
        if policy.decision is AutoDecision.ASK:
            # Looked up after the slot's claim: on PostgreSQL that claim locks the agent's
            # count row, so a twin another process stored first is committed and seen here.
            twin = tx.pending_twin(request)
            if twin is not None:
                if slot_claimed:
                    tx.release_open_slot(command.agent)
                return self._reuse(tx, command, twin, now)
        if open_now is not None:
            return NotAllowed(
                RefusalCode.TOO_MANY_OPEN,
                f"agent {command.agent!r} already has {open_now} pending requests "
                f"(max_open {command.max_open}); wait for decisions or cancel some",
            )
        if command.idempotency_key is not None:
            tx.claim_idempotency_key(
                command.agent, command.idempotency_key, command.fingerprint(), request.id, now
            )
        decided = None
        earlier = self._denied_before(tx, request, now)
        if earlier is not None:
            # Denial memory: people said no to this very ask a moment ago; nobody is asked
            # again, and the agent hears whose no it was and why.
            if slot_claimed:
                tx.release_open_slot(command.agent)
                slot_claimed = False
            decided = _transition(
                request,
                Event.DENY,
                now,
                decision=Decision(
                    verdict=Status.DENIED,
                    by=f"policy:{policy.name}",
                    platform=SYSTEM_PLATFORM,
                    reason=_repeat_denial_reason(earlier, policy),
                ),
            )
        elif (grant := self._live_grant(tx, request, rules, now)) is not None:
            # A time-boxed grant: an approver said yes to this very ask for a while.
            if slot_claimed:
                tx.release_open_slot(command.agent)
                slot_claimed = False
            decided = _transition(
                request,
                Event.APPROVE,
                now,
                decision=Decision(
                    verdict=Status.APPROVED,
                    by=f"grant:{grant.id}",
                    platform=GRANT_PLATFORM,
                    reason=approval_reason(grant),
                    grant=grant.ref(),
                ),
            )
        elif policy.decision is not AutoDecision.ASK:
            # Decided by policy: the request is stored final at once, one row, no update.
            event = Event.APPROVE if policy.decision is AutoDecision.APPROVE else Event.DENY
            decided = _transition(
                request,
                event,
                now,
                decision=Decision(
                    verdict=next_status(Status.PENDING, event),
                    by=f"policy:{policy.name}",
                    platform=SYSTEM_PLATFORM,
                    reason=f"policy {policy.name} decides {policy.decision.value}",
                ),
            )
        tx.insert_request(decided or request, slot_claimed=slot_claimed)
        audit_created(tx, request, now)
        if decided is None:
            self._notify_level(tx, request, 0, now, note=None, rules=rules)
            return Created(request)
        self._audit_final(tx, decided, now)
        return Created(decided)

    @staticmethod
    def _denied_before(
        tx: WriteTx, request: ApprovalRequest, now: datetime
    ) -> ApprovalRequest | None:
        """The agent's same ask that people denied within the policy's ``deny_repeat``, if
        the policy remembers denials (a read only then: the common create pays nothing)."""
        policy = request.policy
        if policy.decision is not AutoDecision.ASK or policy.deny_repeat is None:
            return None
        return tx.last_denial_by_people(
            request.agent, request.payload_sha256, since=now - policy.deny_repeat
        )

    @staticmethod
    def _live_grant(
        tx: WriteTx, request: ApprovalRequest, rules: Rules, now: datetime
    ) -> Grant | None:
        """The live grant that approves ``request`` at once, if its policy has grants (a
        read only then: the create path of other policies pays nothing).

        Checked here, at each use, against the config in force: a grant whose giver is no
        longer an approver, or whose policy's grants changed, approves nothing, even if no
        reload in this process ended it. Four-eyes: a grant never approves a request made
        on behalf of one of its givers (nor of a name that looks like one).
        """
        policy = request.policy
        rule = policy.grants
        if policy.decision is not AutoDecision.ASK or rule is None:
            return None
        match_key = rule.match_key(request.action, request.params)
        found = grant_rows.live_grants_for(tx, request.agent, request.action, match_key, now)
        if not found:
            return None
        approvers = policy.approvers_through(len(policy.levels) - 1)
        requester = rules.directory.requester_match(request.requested_by).persons
        for grant in found:
            if grant.policy != policy.name or stale_because(grant, rule, approvers):
                continue
            if requester.intersection(grant.given_by):
                continue
            return grant
        return None

    @staticmethod
    def _give_grant(request: ApprovalRequest, rules: Rules, now: datetime) -> Grant | None:
        """The grant an approval gives, or ``None``: every counted approval must have
        asked for one (a quorum's grant needs the quorum), it lasts the shortest length
        asked (and no longer than the policy allows now), and it covers only the agent's
        own params (an approval of edited params gives none)."""
        live = rules.policies.named(request.policy.name)
        rule = live.grants if live else None
        if rule is None or request.edited_payload_sha256 is not None:
            return None
        approvers = request.approvals()
        asked = [
            vote.grant_for
            for vote in request.votes
            if vote.person in approvers and vote.verdict is Verdict.APPROVE
        ]
        length = grant_length(asked)
        if length is None:
            return None
        length = min(length, rule.max)
        return Grant(
            id=grant_id_for(request.id),
            policy=request.policy.name,
            agent=request.agent,
            action=request.action,
            match_key=rule.match_key(request.action, request.params),
            match_paths=rule.match,
            matched=rule.matched_values(request.params),
            given_by=tuple(sorted(approvers)),
            given_at=now,
            expires_at=now + length,
            source_request_id=request.id,
        )

    # -- grants -----------------------------------------------------------------------------

    async def live_grants(self) -> list[Grant]:
        """Every grant live now, soonest to end first."""
        now = self._clock.now()
        return await self._store.query(lambda reads: grant_rows.live_grants(reads, now))

    async def revoke_grant(
        self, grant_id: str, *, by: str, person: str | None, reason: str | None = None
    ) -> GrantRevoked | NotFound | NotAllowed:
        """End a grant at once, audited.

        Args:
            grant_id: the grant's id.
            by: who revokes, as the audit names them.
            person: the signed-in person revoking (web inbox): only a giver, an approver of
                the grant's policy or an admin may. ``None`` for an admin's own tool (the
                CLI, which has the database).
            reason: why, if said.
        """
        now = self._clock.now()
        rules = self._rules

        def revoke(tx: WriteTx) -> GrantRevoked | NotFound | NotAllowed:
            found = grant_rows.grant(tx, grant_id)
            if found is None:
                return NotFound(grant_id)
            if person is not None and not self._may_revoke(found, person, rules):
                return NotAllowed(
                    RefusalCode.NOT_AN_APPROVER,
                    f"{person} may not revoke grant {grant_id}: only its givers, the "
                    f"approvers of policy {found.policy} and admins may",
                )
            if not found.is_live(now):
                return GrantRevoked(found, already_ended=True)
            grant_rows.end_grants(tx, [found.id], at=now, by=by, reason=reason)
            tx.append_audit(
                AuditKind.GRANT_ENDED,
                at=now,
                actor=by,
                request_id=found.source_request_id,
                data={"grant": found.id, "why": "revoked", "reason": reason},
            )
            ended = grant_rows.grant(tx, grant_id)
            assert ended is not None
            return GrantRevoked(ended, already_ended=False)

        return await self._store.run(revoke)

    @staticmethod
    def _may_revoke(grant: Grant, person: str, rules: Rules) -> bool:
        if person in grant.given_by or person in rules.directory.admins:
            return True
        policy = rules.policies.named(grant.policy)
        return policy is not None and person in policy.approvers_through(len(policy.levels) - 1)

    async def end_stale_grants(self) -> list[tuple[Grant, str]]:
        """End every live grant the config in force no longer supports (a giver taken out
        of its policy's approvers, its policy's grants removed or changed), audited; what a
        config reload calls. Returns each ended grant with why."""
        now = self._clock.now()
        rules = self._rules

        def end(tx: WriteTx) -> list[tuple[Grant, str]]:
            stale: list[tuple[Grant, str]] = []
            for grant in grant_rows.live_grants(tx, now):
                policy = rules.policies.named(grant.policy)
                rule = policy.grants if policy else None
                approvers = (
                    policy.approvers_through(len(policy.levels) - 1) if policy else frozenset()
                )
                why = stale_because(grant, rule, approvers)
                if why is not None:
                    stale.append((grant, why))
            for grant, why in stale:
                grant_rows.end_grants(tx, [grant.id], at=now, by="config", reason=why)
                tx.append_audit(
                    AuditKind.GRANT_ENDED,
                    at=now,
                    actor="config",
                    request_id=grant.source_request_id,
                    data={"grant": grant.id, "why": "config", "reason": why},
                )
            return stale

        return await self._store.run(end)

    @staticmethod
    def _reuse(
        tx: WriteTx, command: CreateCommand, twin: ApprovalRequest, now: datetime
    ) -> Created:
        """Answer a create with the identical request the agent has pending: the approvers
        see one card, not two, and an agent that lost a request's id (a timed-out tool
        call, a crash before it noted the id) gets it back by asking again. Audited; an
        ``Idempotency-Key`` that came with the create now names ``twin`` too."""
        if command.idempotency_key is not None:
            tx.claim_idempotency_key(
                command.agent, command.idempotency_key, command.fingerprint(), twin.id, now
            )
        tx.append_audit(
            AuditKind.REUSED,
            at=now,
            actor=command.agent,
            request_id=twin.id,
            data={
                "action": twin.action,
                "payload_sha256": twin.payload_sha256,
                "requested_by": twin.requested_by,
                "title": command.title,
            },
        )
        return Created(twin, reused=True)

    async def _replay(self, command: CreateCommand) -> Created | NotAllowed | None:
        return await self._store.query(lambda reads: self._recorded_replay(reads, command))

    @staticmethod
    def _recorded_replay(reads: SyncReads, command: CreateCommand) -> Created | NotAllowed | None:
        """The answer to a create whose ``Idempotency-Key`` is already recorded: the first
        request, or a conflict if the key came with another body; ``None`` if it is new."""
        assert command.idempotency_key is not None
        found = reads.idempotency_key(command.agent, command.idempotency_key)
        if found is None:
            return None
        request_id, fingerprint = found
        if fingerprint != command.fingerprint():
            return NotAllowed(
                RefusalCode.IDEMPOTENCY_CONFLICT,
                "this Idempotency-Key was already used with a different request body",
            )
        request = reads.get_request(request_id)
        assert request is not None, "an idempotency key always names a stored request"
        return Created(request, replayed=True)

    # -- vote -------------------------------------------------------------------------------

    async def vote(self, command: VoteCommand) -> Outcome:
        """Count one person's vote. Exactly one decision results, however many race."""
        with about_request(command.request_id):
            return await self._vote_with_retries(command)

    async def _vote_with_retries(self, command: VoteCommand) -> Outcome:
        key = await self._confirmation_key.get()
        outcome = await self._decide_with_retries(
            command.request_id, partial(self._vote_once, command=command, confirm_key=key)
        )
        assert not isinstance(outcome, ClickRefused)
        return outcome

    async def _decide_with_retries(
        self,
        request_id: str | None,
        decide: Callable[..., ClickOutcome],
    ) -> ClickOutcome:
        """Run a deciding command (``decide(tx, rules=..., caught_up=...)``) in the writer,
        again on fresh state while the request keeps changing under it; then announce."""
        for _attempt in range(_MAX_ATTEMPTS):
            await self.follow_clock_steps()
            caught_up: list[ApprovalRequest] = []
            rules = self._rules
            try:
                outcome = await self._store.run(partial(decide, rules=rules, caught_up=caught_up))
            except (ConcurrentUpdateError, IntegrityError):
                continue  # someone changed the request under us; judge again on fresh state
            if isinstance(outcome, Applied) and outcome.request.status.is_final:
                crash_point(CrashPoint.AFTER_DECISION_BEFORE_EDIT)
            for request in caught_up:
                self._announce(request)
            if isinstance(outcome, Applied):
                self._announce(outcome.request)
            return outcome
        raise ConcurrentUpdateError(f"request {request_id} kept changing; vote not counted")

    # -- clicks -----------------------------------------------------------------------------

    async def handle_click(self, click: Click) -> ClickOutcome:
        """Decide a click on a card, in one write: refuse and audit a click from outside
        signoff's installation, a button that is not signoff's, or a message that is not
        the card posted for that request on that platform; otherwise count it as the vote
        it is (see :meth:`vote`)."""
        with about_request(click.request_id):
            key = await self._confirmation_key.get()
            return await self._decide_with_retries(
                click.request_id, partial(self._click_once, click=click, confirm_key=key)
            )

    def _click_once(
        self,
        tx: WriteTx,
        click: Click,
        rules: Rules,
        caught_up: list[ApprovalRequest],
        confirm_key: bytes,
    ) -> ClickOutcome:
        refused = self._refuse_click(tx, click)
        if refused is not None:
            return refused
        assert click.request_id is not None
        reason = click.reason.strip() if click.reason and click.reason.strip() else None
        command = VoteCommand(
            click.request_id,
            click.platform,
            click.identity,
            click.verdict,
            reason,
            grant_for=click.grant_for,
            confirm_token=click.confirm_token,
        )
        return self._vote_once(tx, command, rules, caught_up, confirm_key)

    def _refuse_click(self, tx: WriteTx, click: Click) -> ClickRefused | None:
        """The refusal of a click that cannot become a vote (audited here), or ``None``."""
        if click.foreign is not None:
            code, detail, why = click.foreign.code, click.foreign.detail, click.foreign.why
        elif click.request_id is None:
            code, why = MALFORMED_CLICK, "this button was not made by signoff"
            detail = f"button reference {str(click.raw_reference)[:100]!r} is not signoff's"
        elif not (
            self.recent_cards.is_card_of(click)
            or is_card_of(click, tx.deliveries(click.request_id))
        ):
            code, why = (
                WRONG_MESSAGE,
                "this message is not the card signoff posted for that request",
            )
            detail = (
                f"click on message {dict(click.message or {})}, not a card posted for the request"
            )
        else:
            return None
        tx.append_audit(
            AuditKind.REFUSED,
            at=self._clock.now(),
            actor=click.actor,
            request_id=click.request_id,
            data={"code": code, "detail": detail[:500]},
        )
        return ClickRefused(code, why)

    async def reason_prompt(self, click: Click) -> ReasonPrompt | ClickOutcome:
        """The first click of a deny with a reason: the form to show, or the refusal the
        form's submission would meet (audited now, so nobody types a reason only to be
        refused). Counts nothing."""
        with about_request(click.request_id):
            return await self._store.run(
                partial(self._reason_prompt_once, click=click, rules=self._rules)
            )

    def _reason_prompt_once(
        self, tx: WriteTx, click: Click, rules: Rules
    ) -> ReasonPrompt | ClickOutcome:
        refused = self._refuse_click(tx, click)
        if refused is not None:
            return refused
        assert click.request_id is not None
        request = tx.get_request(click.request_id)
        if request is None:
            return NotFound(click.request_id)
        probe = VoteCommand(request.id, click.platform, click.identity, Verdict.DENY, "-")
        judged = judge_vote(request, probe, rules)
        if not isinstance(judged, str):
            code = judged.code.value if isinstance(judged, NotAllowed) else "already_decided"
            tx.append_audit(
                AuditKind.REFUSED,
                at=self._clock.now(),
                actor=click.actor,
                request_id=request.id,
                data={"code": code, "detail": "deny refused before the reason modal"},
            )
            return judged
        return ReasonPrompt(request.id, request.title, request.policy.require_reason)

    async def confirm_prompt(self, click: Click) -> ConfirmPrompt | None:
        """The first Approve under a policy that needs confirming: the confirmation to show
        the person. ``None`` when there is none to show: the policy needs no confirming,
        or the click would be refused anyway (not signoff's card, not an approver, already
        decided...); the adapter then hands the click to :meth:`handle_click`, which
        refuses, audits and answers it, or counts it. Reads only, counts nothing."""
        if click.verdict is not Verdict.APPROVE or click.request_id is None:
            return None
        if click.foreign is not None:
            return None
        request_id = click.request_id

        def on_our_card(reads: SyncReads) -> ApprovalRequest | None:
            request = reads.get_request(request_id)
            if request is None or not request.policy.needs_confirmation:
                return None
            if not (
                self.recent_cards.is_card_of(click)
                or is_card_of(click, reads.deliveries(request_id))
            ):
                return None
            return request

        request = await self._store.query(on_our_card)
        if request is None:
            return None
        command = VoteCommand(request.id, click.platform, click.identity, Verdict.APPROVE)
        return await self._prompt_for(request, command)

    async def confirm_step(self, command: VoteCommand) -> ConfirmPrompt | None:
        """The confirmation to show before an approval from a page (the inbox, an email
        link's page), or ``None`` when the vote needs none or would be refused anyway:
        then submit it to :meth:`vote` as it is. Reads only, counts nothing."""
        if command.verdict is not Verdict.APPROVE:
            return None
        request = await self._store.get_request(command.request_id)
        if request is None or not request.policy.needs_confirmation:
            return None
        return await self._prompt_for(request, command)

    async def _prompt_for(
        self, request: ApprovalRequest, command: VoteCommand
    ) -> ConfirmPrompt | None:
        """The confirmation of ``command`` (an approval) as ``request`` stands, with a token
        bound to the person's platform identity and the payload they approve."""
        now = self._clock.now()
        if request.status.is_final or now >= request.deadline:
            return None
        if not isinstance(judge_vote(request, command, self._rules), str):
            return None
        judged_payload = judge_payload(request, command)
        if isinstance(judged_payload, NotAllowed):
            return None
        approved = judged_payload.payload_sha256 if judged_payload else request.proposal_sha256
        expires_at = confirmation_expiry(now, request.deadline)
        token = sign_confirmation(
            await self._confirmation_key.get(),
            request_id=request.id,
            actor=f"{command.platform}:{command.identity}",
            payload_sha256=approved,
            expires_at=expires_at,
        )
        params = judged_payload.params if judged_payload else request.proposal_params
        return ConfirmPrompt(
            request.id, self.card_for(request), approved, params, token, expires_at
        )

    def _catch_up(self, tx: WriteTx, request: ApprovalRequest, now: datetime) -> ApprovalRequest:
        """Apply a timeout or escalation that is due but not yet swept.

        A click or cancel must meet the request as its deadlines say it stands now, not as
        the sweeper last left it: a late approval must not beat an overdue timeout.
        """
        if isinstance(plan_step(request, now), TimeOut | Escalate):
            return self._apply_step(tx, request, now)
        return request

    def _vote_once(
        self,
        tx: WriteTx,
        command: VoteCommand,
        rules: Rules,
        caught_up: list[ApprovalRequest],
        confirm_key: bytes,
    ) -> Outcome:
        """The vote command, in the writer's batch: judge on the stored state, then count."""
        caught_up.clear()  # a command may run twice (see approvals.store.writer)
        now = self._clock.now()
        if self._clock_stepped():
            raise ConcurrentUpdateError("the wall clock was stepped; judging again")
        request = tx.get_request(command.request_id, lock=True)
        if request is None:
            return NotFound(command.request_id)
        current = self._catch_up(tx, request, now)
        if current is not request:
            caught_up.append(current)
            request = current
        judged = judge_vote(request, command, rules)
        edit: ProposedEdit | None = None
        if isinstance(judged, str):
            judged_payload = judge_payload(request, command)
            if isinstance(judged_payload, NotAllowed):
                judged = judged_payload
            else:
                edit = judged_payload
                judged = judge_grant(request, command, rules, edit) or judged
        confirmed = False
        approving = command.verdict is Verdict.APPROVE
        needs_confirmation = approving and request.policy.needs_confirmation
        if isinstance(judged, str) and needs_confirmation:
            refusal = _unconfirmed(request, command, edit, confirm_key, now)
            judged = refusal or judged
            confirmed = refusal is None
        # Spent only for a vote that counts: a refused one leaves the link usable.
        if isinstance(judged, str) and command.link is not None:
            judged = self._spend_link(tx, request, command.link, now) or judged
        if not isinstance(judged, str):
            self._audit_refusal(tx, request, command, judged, now)
            return judged
        vote = CastVote(
            person=judged,
            verdict=command.verdict,
            platform=command.platform,
            identity=command.identity,
            reason=command.reason,
            cast_at=now,
            payload_sha256=edit.payload_sha256 if edit else request.proposal_sha256,
            grant_for=command.grant_for,
        )
        changes: dict[str, object] = {"votes": (*request.votes, vote)}
        if edit is not None:
            changes.update(edited_params=edit.params, edited_payload_sha256=edit.payload_sha256)
        counted = replace(request, **changes)  # type: ignore[arg-type]
        if command.verdict is Verdict.DENY:
            event = Event.DENY
        elif len(counted.approvals()) >= request.policy.quorum:
            event = Event.APPROVE
        else:
            event = Event.VOTE
        decision = None
        given = None
        if event is not Event.VOTE:
            if event is Event.APPROVE:
                given = self._give_grant(counted, rules, now)
            decision = Decision(
                verdict=next_status(request.status, event),
                by=judged,
                platform=command.platform,
                reason=command.reason,
                grant=given.ref() if given else None,
            )
        updated = _transition(request, event, now, decision=decision, **changes)
        tx.insert_vote(request.id, vote)
        tx.update_request(request, updated)
        if given is not None:
            grant_rows.add_grant(tx, given)
            tx.append_audit(
                AuditKind.GRANTED, at=now, actor=judged, request_id=request.id, data=given.to_json()
            )
        if updated.status.is_final:
            self._audit_final(tx, updated, now, edited_by=judged if edit else None)
        else:
            data: dict[str, object] = {
                "verdict": vote.verdict.value,
                "platform": vote.platform,
                "identity": vote.identity,
                "approvals": len(updated.approvals()),
                "quorum": updated.policy.quorum,
            }
            if vote.payload_sha256 != request.payload_sha256 or edit is not None:
                data.update(_edit_audit(updated, vote, edit))
            if vote.grant_for is not None:
                data["grant_seconds"] = int(vote.grant_for.total_seconds())
            if confirmed:
                data["confirmed"] = True
            tx.append_audit(AuditKind.VOTED, at=now, actor=judged, request_id=request.id, data=data)
        note = f"Edited by {judged}: approve the edited params in the inbox" if edit else None
        self._edit_cards(tx, updated, now, note=note)
        crash_point(CrashPoint.DURING_DECISION)
        return Applied(updated, event)

    def _spend_link(
        self, tx: WriteTx, request: ApprovalRequest, link: LinkUse, now: datetime
    ) -> NotAllowed | None:
        """Spend the decision link a vote came through, in the vote's own transaction.

        The request row is locked, so two uses of one link meet here one after the other:
        the second finds the nonce spent (and the primary key would refuse it anyway).
        Returns a refusal, or ``None`` when the link was good and is now spent.
        """
        if now >= link.expires_at:
            return NotAllowed(
                RefusalCode.INVALID,
                "this link has expired; use the newest email about this request, or the "
                "signoff inbox",
            )
        if link_rows.link_is_spent(tx, link.nonce):
            return NotAllowed(RefusalCode.INVALID, "this link has already been used")
        link_rows.spend_link(tx, nonce=link.nonce, request_id=request.id, at=now)
        return None

    def _audit_refusal(
        self,
        tx: WriteTx,
        request: ApprovalRequest,
        command: VoteCommand,
        refusal: Outcome,
        now: datetime,
    ) -> None:
        code = refusal.code.value if isinstance(refusal, NotAllowed) else "already_decided"
        tx.append_audit(
            AuditKind.REFUSED,
            at=now,
            actor=f"{command.platform}:{command.identity}",
            request_id=request.id,
            data={
                "code": code,
                "verdict": command.verdict.value,
                "status": request.status.value,
                **(
                    {"confirm_token": "given" if command.confirm_token else "missing"}
                    if code == RefusalCode.UNCONFIRMED.value
                    else {}
                ),
            },
        )

    # -- cancel -----------------------------------------------------------------------------

    async def cancel(self, request_id: str, agent: str, reason: str | None = None) -> Outcome:
        """Withdraw a pending request. Only the agent that asked may cancel it."""
        with about_request(request_id):
            return await self._cancel_with_retries(request_id, agent, reason)

    async def _cancel_with_retries(
        self, request_id: str, agent: str, reason: str | None
    ) -> Outcome:
        for _attempt in range(_MAX_ATTEMPTS):
            await self.follow_clock_steps()
            caught_up: list[ApprovalRequest] = []
            try:
                outcome = await self._store.run(
                    partial(
                        self._cancel_once,
                        request_id=request_id,
                        agent=agent,
                        reason=reason,
                        caught_up=caught_up,
                    )
                )
            except ConcurrentUpdateError:
                continue
            # A request already final, or made final by an overdue deadline just applied,
            # comes back as AlreadyDecided; the catch-up is announced either way.
            for request in caught_up:
                self._announce(request)
            if isinstance(outcome, Applied):
                self._announce(outcome.request)
            return outcome
        raise ConcurrentUpdateError(f"request {request_id} kept changing; not cancelled")

    def _cancel_once(
        self,
        tx: WriteTx,
        request_id: str,
        agent: str,
        reason: str | None,
        caught_up: list[ApprovalRequest],
    ) -> Outcome:
        caught_up.clear()
        now = self._clock.now()
        if self._clock_stepped():
            raise ConcurrentUpdateError("the wall clock was stepped; judging again")
        request = tx.get_request(request_id, lock=True)
        if request is None or request.agent != agent:
            # Other agents' requests are invisible, not forbidden.
            return NotFound(request_id)
        current = self._catch_up(tx, request, now)
        if current is not request:
            caught_up.append(current)
            request = current
        if request.status.is_final:
            return AlreadyDecided(request)
        decision = Decision(Status.CANCELLED, by=agent, platform="api", reason=reason)
        updated = _transition(request, Event.CANCEL, now, decision=decision)
        tx.update_request(request, updated)
        self._audit_final(tx, updated, now)
        self._edit_cards(tx, updated, now)
        return Applied(updated, Event.CANCEL)

    # -- deadlines --------------------------------------------------------------------------

    async def process_due(self, limit: int = 200) -> int:
        """Apply the one due step (reminder, escalation or timeout) to each due request.

        Returns how many requests were handled; call again while it returns ``limit``.
        """
        await self.follow_clock_steps()
        changed: list[ApprovalRequest] = []
        handled = await self._store.run(lambda tx: self._sweep(tx, limit, changed))
        for request in changed:
            self._announce(request)
        return handled

    def _sweep(self, tx: WriteTx, limit: int, changed: list[ApprovalRequest]) -> int:
        """The sweep command: claim due requests and apply each one's step, as one set."""
        changed.clear()
        now = self._clock.now()
        if self._clock_stepped():
            return 0  # stepped since the look above: the next sweep follows it first
        due = tx.due_requests(now, limit)
        if not due:
            return 0
        try:
            with tx.savepoint():
                changed.extend(self._apply_steps(tx, due, now))
        except Exception:
            # Some request cannot be processed. It must not hold back the others, nor stop
            # every later sweep at the same row: apply them one by one, postponing that one.
            changed.clear()
            for request in due:
                with about_request(request.id):
                    try:
                        with tx.savepoint():
                            changed.extend(self._apply_steps(tx, [request], now))
                    except Exception:
                        log.exception(
                            "deadline step failed for request %s; retrying later", request.id
                        )
                        tx.postpone(request.id, now + SWEEP_RETRY_DELAY)
        crash_point(CrashPoint.DURING_SWEEP)
        return len(due)

    def _apply_step(self, tx: WriteTx, request: ApprovalRequest, now: datetime) -> ApprovalRequest:
        return self._apply_steps(tx, [request], now)[0]

    def _apply_steps(
        self, tx: WriteTx, requests: list[ApprovalRequest], now: datetime
    ) -> list[ApprovalRequest]:
        """Apply each request's due step. Timeouts, most of any backlog, are applied as one
        set: one update, one query for the cards, one insert for their edits."""
        after: dict[str, ApprovalRequest] = {}
        timing_out: list[tuple[ApprovalRequest, TimeOut]] = []
        for request in requests:
            step = plan_step(request, now)
            if isinstance(step, TimeOut):
                timing_out.append((request, step))
            else:
                after[request.id] = self._apply_other_step(tx, request, step, now)
        for updated in self._time_out(tx, timing_out, now):
            after[updated.id] = updated
        return [after[request.id] for request in requests]

    def _time_out(
        self, tx: WriteTx, timing_out: list[tuple[ApprovalRequest, TimeOut]], now: datetime
    ) -> list[ApprovalRequest]:
        changes = []
        for request, step in timing_out:
            event = _TIMEOUT_EVENTS[step.outcome]
            decision = Decision(
                verdict=next_status(request.status, event),
                by=TIMEOUT_ACTOR,
                platform=SYSTEM_PLATFORM,
                reason="nobody decided before the deadline",
            )
            changes.append((request, _transition(request, event, now, decision=decision)))
        tx.update_requests(changes)
        timed_out = [updated for _request, updated in changes]
        for updated in timed_out:
            self._audit_final(tx, updated, now)
        self._edit_cards_of(tx, timed_out, now)
        return timed_out

    def _apply_other_step(
        self, tx: WriteTx, request: ApprovalRequest, step: DeadlineStep | None, now: datetime
    ) -> ApprovalRequest:
        """A reminder or an escalation, or a fresh due time when nothing is due."""
        if isinstance(step, Escalate):
            plan = schedule_after(request, step.to_level, now)
            updated = _transition(
                request,
                Event.ESCALATE,
                now,
                level=step.to_level,
                next_due_at=plan.next_due_at,
                next_remind_at=plan.next_remind_at,
            )
            tx.update_request(request, updated)
            approvers = updated.policy.levels[step.to_level].approvers
            tx.append_audit(
                AuditKind.ESCALATED,
                at=now,
                actor=TIMEOUT_ACTOR,
                request_id=request.id,
                data={
                    "from_level": request.level,
                    "to_level": step.to_level,
                    "approvers": list(approvers),
                },
            )
            crash_point(CrashPoint.DURING_ESCALATION)
            note = f"Escalated to level {step.to_level}: {', '.join(approvers)}"
            self._edit_cards(tx, updated, now, note=note)
            self._notify_level(tx, updated, step.to_level, now, note=note)
            return updated
        if isinstance(step, Remind):
            plan = schedule_after(request, request.level, now)
            updated = _transition(
                request,
                Event.REMIND,
                now,
                next_due_at=plan.next_due_at,
                next_remind_at=plan.next_remind_at,
            )
            tx.update_request(request, updated)
            tx.append_audit(
                AuditKind.REMINDED,
                at=now,
                actor=TIMEOUT_ACTOR,
                request_id=request.id,
                data={"level": request.level},
            )
            for delivery in tx.deliveries(request.id):
                # A request gathered into a digest has no card of its own to reply to.
                if delivery.level == request.level and flood.digest_of(delivery.ref) is None:
                    tx.enqueue(
                        request_id=request.id,
                        destination=delivery.destination,
                        kind=REMIND,
                        at=now,
                        payload={"text": "Reminder: this request is still waiting for a decision."},
                    )
            return updated
        # Nothing due (the row's due time was stale): store a fresh due time and move on.
        refreshed = replace(request, next_due_at=next_due(request), version=request.version + 1)
        tx.update_request(request, refreshed)
        return refreshed

    # -- shared effects ---------------------------------------------------------------------

    def _notify_level(
        self,
        tx: WriteTx,
        request: ApprovalRequest,
        level: int,
        now: datetime,
        *,
        note: str | None,
        rules: Rules | None = None,
    ) -> None:
        """Post cards to the level's destinations that do not have one yet.

        Where the agent has reached the flood guard's limit, the request joins the agent's
        digest card there instead (:mod:`approvals.flood`).
        """
        spec = request.policy.levels[level]
        directory = (rules or self._rules).directory
        for destination in directory.destinations(spec.notify, spec.approvers):
            if not tx.add_delivery(request.id, destination.key, level, now):
                continue
            if flood.over_limit(tx, request.agent, destination.key, now):
                flood.gather(tx, request, destination.key, now)
                continue
            payload = {"note": note} if note else {}
            tx.enqueue(
                request_id=request.id,
                destination=destination.key,
                kind=SEND,
                at=now,
                payload=payload,
            )

    def _edit_cards(
        self,
        tx: WriteTx,
        request: ApprovalRequest,
        now: datetime,
        *,
        note: str | None = None,
    ) -> None:
        self._edit_cards_of(tx, [request], now, note=note)

    def _edit_cards_of(
        self,
        tx: WriteTx,
        requests: list[ApprovalRequest],
        now: datetime,
        *,
        note: str | None = None,
    ) -> None:
        """Re-render every card already posted (or about to be) for the requests.

        A request gathered into a digest has no card; its digest is re-rendered when the
        request leaves it (becomes final), since the digest counts the waiting ones.
        """
        cards = tx.deliveries_of_many([request.id for request in requests])
        edits: list[QueuedMessage] = []
        for request in requests:
            for delivery in cards[request.id]:
                digest = flood.digest_of(delivery.ref)
                if digest is not None:
                    if request.status.is_final:
                        flood.refresh(tx, digest, delivery.destination, request.agent, now)
                    continue
                payload = {"note": note} if note else {}
                edits.append(QueuedMessage(request.id, delivery.destination, EDIT, now, payload))
        tx.enqueue_many(edits)

    def _audit_final(
        self,
        tx: WriteTx,
        request: ApprovalRequest,
        now: datetime,
        *,
        edited_by: str | None = None,
    ) -> None:
        decision = request.decision
        assert decision is not None
        data: dict[str, object] = {
            "status": request.status.value,
            "platform": decision.platform,
            "reason": decision.reason,
            "deciders": _deciders(request),
            "payload_sha256": request.payload_sha256,
        }
        if decision.grant is not None:
            data["grant"] = decision.grant.to_json()
        if request.edited_payload_sha256 is not None:
            # Both hashes: what the agent asked for (above) and what was proposed instead.
            data.update(
                edited_payload_sha256=request.edited_payload_sha256,
                edited_params=request.edited_params,
                approved_payload_sha256=(
                    request.edited_payload_sha256 if request.status is Status.APPROVED else None
                ),
            )
            if edited_by is not None:
                data["edited_by"] = edited_by
        if request.confirmed:
            data["confirmed"] = True
        tx.append_audit(
            _FINAL_AUDIT_KIND[request.status],
            at=now,
            actor=decision.by,
            request_id=request.id,
            data=data,
        )
        if request.callback_url:
            # Queued with the decision itself, so the agent hears about it even if this
            # process dies right after the commit.
            tx.enqueue(
                request_id=request.id,
                destination=webhook_destination(request.id).key,
                kind=WEBHOOK,
                at=now,
                payload={"event_id": new_event_id()},
            )


def audit_created(tx: WriteTx, request: ApprovalRequest, at: datetime) -> None:
    """The ``created`` audit entry of a new request (also what seeding tools write)."""
    tx.append_audit(
        AuditKind.CREATED,
        at=at,
        actor=request.agent,
        request_id=request.id,
        data={
            "action": request.action,
            "payload_sha256": request.payload_sha256,
            "policy": request.policy.name,
            "requested_by": request.requested_by,
            "deadline": request.deadline.isoformat(),
        },
    )


def _unconfirmed(
    request: ApprovalRequest,
    command: VoteCommand,
    edit: ProposedEdit | None,
    key: bytes,
    now: datetime,
) -> NotAllowed | None:
    """The refusal of an approval its policy needs confirmed that carries no genuine,
    unexpired confirmation for this person, request and payload; ``None`` if confirmed."""
    if confirmation_is_valid(
        key,
        command.confirm_token,
        request_id=request.id,
        actor=f"{command.platform}:{command.identity}",
        payload_sha256=edit.payload_sha256 if edit else request.proposal_sha256,
        now=now,
    ):
        return None
    if command.confirm_token is None:
        why = (
            f"policy {request.policy.name} needs each approval confirmed: press Approve, "
            "then confirm what it shows"
        )
    else:
        why = (
            "this confirmation is not valid for you and this request, or it has expired; "
            "press Approve again and confirm"
        )
    return NotAllowed(RefusalCode.UNCONFIRMED, why)


def _deciders(request: ApprovalRequest) -> list[str]:
    """Who made the decision: every approver for an approval, else the one who decided."""
    assert request.decision is not None
    if request.decision.by_grant:
        assert request.decision.grant is not None
        return list(request.decision.grant.given_by)
    if request.status is Status.APPROVED and request.decision.platform != SYSTEM_PLATFORM:
        return sorted(request.approvals())
    return [request.decision.by]


def _change_summary(request: ApprovalRequest) -> str:
    """One line about where a request stands after a change, for the log."""
    if request.status.is_final and request.decision is not None:
        return f"{request.status.value} by {request.decision.by} (policy {request.policy.name})"
    approvals = len(request.approvals())
    return (
        f"{request.status.value} at level {request.level} (policy {request.policy.name}, "
        f"{approvals} of {request.policy.quorum} approvals)"
    )


def _invalid_create(command: CreateCommand) -> str | None:
    if not command.action or not command.action.strip():
        return "action must not be empty"
    if not command.title or not command.title.strip():
        return "title must not be empty"
    if not isinstance(command.params, dict):
        return "params must be a JSON object"
    if command.timeout is not None and command.timeout.total_seconds() <= 0:
        return "timeout must be positive"
    texts = (command.action, command.title, command.details, command.requested_by or "")
    if any("\x00" in text for text in texts):
        return "text must not contain NUL characters (U+0000)"
    return None
