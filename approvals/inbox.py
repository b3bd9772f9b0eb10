"""What the web inbox shows, read by the core: the port the inbox adapter is given.

The web inbox is a channel like the chat platforms, except that it shows pages instead of
posting cards. Which requests a person may see, whether they may vote on one now (and if
not, why), and which page of the audit log to show are decisions, so they are made here;
the inbox adapter only renders what these queries return and hands votes to its sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from approvals.access import WebSession
from approvals.audit import AuditEntry
from approvals.card import ApprovalCard
from approvals.directory import WEB_PLATFORM
from approvals.grants import Grant, GrantRevoked
from approvals.machine import Status
from approvals.model import ApprovalRequest, Verdict, VoteCommand
from approvals.outcomes import NotAllowed, NotFound
from approvals.service import ApprovalService, judge_vote
from approvals.store import AuditVerification, SyncReads

PENDING_SCAN_LIMIT = 500
"""How many of the newest pending requests the inbox looks through."""
HISTORY_SCAN_LIMIT = 200
"""How many of the newest requests of each final status the history looks through."""
HISTORY_PAGE_SIZE = 100
AUDIT_PAGE_SIZE = 50
AUDIT_SCAN_LIMIT = 5000
"""How many audit entries one page view looks through for entries its viewer may see."""
FINAL_STATUSES = (Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.CANCELLED)


def visible_to(request: ApprovalRequest, person: str) -> bool:
    """Whether ``person`` approves at any level of the request's policy snapshot."""
    levels = request.policy.levels
    return bool(levels) and person in request.policy.approvers_through(len(levels) - 1)


@dataclass(frozen=True)
class InboxItem:
    """One request as a person sees it in the inbox.

    Attributes:
        request: the request.
        card: its card (title, fields, what was decided), as every channel shows it.
        can_vote: whether the person's vote would count now (a preview; the vote itself is
            judged again when it arrives).
        hint: why not, when the person may not vote on a pending request.
    """

    request: ApprovalRequest
    card: ApprovalCard
    can_vote: bool
    hint: str | None


@dataclass(frozen=True)
class PendingList:
    """The pending requests a person approves, newest first.

    ``complete`` is false when there were more pending requests than the inbox looks
    through (:data:`PENDING_SCAN_LIMIT`), so some may be missing from ``items``.
    """

    items: list[InboxItem]
    complete: bool


@dataclass(frozen=True)
class RequestView:
    """One request in full, for its own page: the inbox item and its audit trail."""

    item: InboxItem
    audit: list[AuditEntry]


@dataclass(frozen=True)
class AuditPage:
    """A page of the audit log, newest first, under the whole chain's verification.

    Attributes:
        verification: the result of checking the whole chain.
        entries: the page's entries, newest first.
        older: the ``before`` value of the next older page, or ``None`` at the start.
        has_newer: whether newer entries exist than this page shows.
    """

    verification: AuditVerification
    entries: list[AuditEntry]
    older: int | None
    has_newer: bool


class InboxReads(Protocol):
    """What the web inbox adapter may read: the port it is given instead of the store."""

    def now(self) -> datetime:
        """The service clock's time, for "5 minutes ago"."""

    async def pending_for(self, person: str) -> PendingList:
        """Pending requests ``person`` approves at some level, newest first."""

    async def history_for(self, person: str) -> list[InboxItem]:
        """Decided requests ``person`` approves at some level, most recently decided first."""

    async def request_for(self, person: str, request_id: str) -> RequestView | None:
        """One request with its audit trail; ``None`` when there is no such request or
        ``person`` may not see it (the two are not told apart)."""

    async def audit_page(self, person: str, before: int | None) -> AuditPage:
        """The audit entries ``person`` may see before entry number ``before`` (the newest
        when ``None``): an admin's are all; anyone else's are those of the requests they
        may see."""

    async def grants_for(self, person: str) -> list[Grant]:
        """The live time-boxed grants ``person`` may see and revoke, soonest to end first:
        an admin's are all; anyone else's are those they gave and those of the policies
        they approve for."""

    async def revoke_grant(
        self, person: str, grant_id: str, reason: str | None
    ) -> GrantRevoked | NotFound | NotAllowed:
        """The grants page's one change: ``person`` ends a grant at once (refused unless
        they gave it, approve for its policy or are an admin)."""


class InboxQueries:
    """The core's answers to :class:`InboxReads`, read from the service's store."""

    def __init__(self, service: ApprovalService) -> None:
        self._service = service

    def now(self) -> datetime:
        return self._service.clock.now()

    def _may_see(self, request: ApprovalRequest, person: str) -> bool:
        return person in self._service.rules.directory.admins or visible_to(request, person)

    def _item(self, request: ApprovalRequest, person: str) -> InboxItem:
        can_vote, hint = self._voting_hint(request, person)
        return InboxItem(request, self._service.card_for(request), can_vote, hint)

    def _voting_hint(self, request: ApprovalRequest, person: str) -> tuple[bool, str | None]:
        if request.status.is_final:
            return False, None
        preview = VoteCommand(request.id, WEB_PLATFORM, person, Verdict.APPROVE)
        judged = judge_vote(request, preview, self._service.rules)
        if isinstance(judged, str):
            return True, None
        return False, judged.message if isinstance(judged, NotAllowed) else None

    async def pending_for(self, person: str) -> PendingList:
        pending = await self._service.store.query(
            lambda reads: reads.list_requests(status=Status.PENDING, limit=PENDING_SCAN_LIMIT)
        )
        items = [self._item(each, person) for each in pending if self._may_see(each, person)]
        return PendingList(items, complete=len(pending) < PENDING_SCAN_LIMIT)

    async def history_for(self, person: str) -> list[InboxItem]:
        def decided(reads: SyncReads) -> list[ApprovalRequest]:
            found: list[ApprovalRequest] = []
            for status in FINAL_STATUSES:
                found.extend(reads.list_requests(status=status, limit=HISTORY_SCAN_LIMIT))
            return found

        found = await self._service.store.query(decided)
        mine = [each for each in found if self._may_see(each, person)]
        mine.sort(key=lambda each: each.decided_at or each.created_at, reverse=True)
        return [self._item(each, person) for each in mine[:HISTORY_PAGE_SIZE]]

    async def request_for(self, person: str, request_id: str) -> RequestView | None:
        def read(reads: SyncReads) -> tuple[ApprovalRequest | None, list[AuditEntry]]:
            request = reads.get_request(request_id)
            if request is None or not self._may_see(request, person):
                return None, []
            return request, reads.audit_entries(request_id=request_id)

        request, audit = await self._service.store.query(read)
        if request is None:
            return None
        return RequestView(self._item(request, person), audit)

    async def grants_for(self, person: str) -> list[Grant]:
        rules = self._service.rules
        if person in rules.directory.admins:
            return await self._service.live_grants()

        def approves_for(grant: Grant) -> bool:
            policy = rules.policies.named(grant.policy)
            return policy is not None and person in policy.approvers_through(len(policy.levels) - 1)

        return [
            grant
            for grant in await self._service.live_grants()
            if person in grant.given_by or approves_for(grant)
        ]

    async def revoke_grant(
        self, person: str, grant_id: str, reason: str | None
    ) -> GrantRevoked | NotFound | NotAllowed:
        return await self._service.revoke_grant(grant_id, by=person, person=person, reason=reason)

    async def audit_page(self, person: str, before: int | None) -> AuditPage:
        verification = await self._service.store.verify_audit()
        admin = person in self._service.rules.directory.admins

        def read(reads: SyncReads) -> AuditPage:
            head_seq, _head_hash = reads.audit_head()
            upper = head_seq if before is None else min(before - 1, head_seq)
            seen: dict[str, bool] = {}

            def may_see(entry: AuditEntry) -> bool:
                if admin:
                    return True
                if entry.request_id is None:
                    return False  # the service's own entries: config loads, key changes
                if entry.request_id not in seen:
                    request = reads.get_request(entry.request_id)
                    seen[entry.request_id] = request is not None and self._may_see(request, person)
                return seen[entry.request_id]

            # Newest first, a chunk at a time, until a page is full, the log's start is
            # reached, or AUDIT_SCAN_LIMIT entries were looked through.
            shown: list[AuditEntry] = []
            cursor = upper  # the newest entry not looked at yet
            while cursor > 0 and len(shown) < AUDIT_PAGE_SIZE:
                if upper - cursor >= AUDIT_SCAN_LIMIT:
                    break
                lower = max(0, cursor - AUDIT_PAGE_SIZE)
                found = reads.audit_entries(after_seq=lower, limit=cursor - lower)
                for entry in sorted(found, key=lambda each: each.seq, reverse=True):
                    if entry.seq > cursor:
                        continue
                    if len(shown) == AUDIT_PAGE_SIZE:
                        break
                    cursor = entry.seq - 1
                    if may_see(entry):
                        shown.append(entry)
                else:
                    cursor = lower
            return AuditPage(
                verification,
                shown,
                older=cursor + 1 if cursor > 0 else None,
                has_newer=upper < head_seq,
            )

        return await self._service.store.query(read)


class FailedSignIns(Protocol):
    """The limit on failed authentications per client address that the agent API uses too
    (``bot.limits.FailureGuard``): bad sign-in tokens and unknown session cookies count."""

    def retry_after(self, client: str) -> int:
        """0 if ``client`` may try now, else whole seconds until it may."""

    def failed(self, client: str) -> None:
        """Count one failed attempt from ``client``."""


class WebSessions(Protocol):
    """The sign-ins and sessions the web inbox may use (``approvals.access.AccessStore``)."""

    async def redeem_login_token(self, token: str) -> str | None:
        """Use a sign-in token once: the person it was made for, or ``None``."""

    async def create_session(self, person: str) -> str:
        """Open a session for ``person``; returns the cookie value."""

    async def session(self, token: str) -> WebSession | None:
        """The live session behind a cookie value, or ``None``."""

    async def end_session(self, token: str) -> None:
        """End the session behind a cookie value (nothing if there is none)."""
