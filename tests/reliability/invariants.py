"""The invariants every reliability scenario ends with ("Nothing lost" in RELIABILITY.md).

:func:`check_invariants` reads the whole store and raises one ``AssertionError`` that lists
every violation it found, or returns counts of what it checked:

1. every request an agent was answered 2xx for has its row;
2. every request is final, or has a future deadline, or is at most two sweep intervals past
   its due step (timeout, escalation or reminder);
3. the audit log holds exactly one entry per transition (one creation, one per counted vote,
   one per escalation in order, one final entry iff the request is final) and its hash chain
   verifies;
4. no outbox row is pending longer than the maximum backoff past its retry time, and every
   dead-lettered row says why;
5. every final request reached its agent (when the scenario says which did), and a request
   with a callback URL has exactly one webhook row once final and none before;
6. every posted card of a final request shows the final status (when the scenario read the
   cards back from its fake platforms: see :func:`rendered_cards` and :func:`shown_status`).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from approvals.audit import AuditEntry, AuditKind
from approvals.deadlines import Escalate, Remind, TimeOut, plan_step
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.outbox import DEAD, SENT, RetryPolicy
from approvals.service import WEBHOOK
from approvals.store import SqlStore
from approvals.tables import DELIVERIES, OUTBOX

PENDING_ROW = "pending"
FINAL_KINDS = {
    Status.APPROVED: AuditKind.DECIDED,
    Status.DENIED: AuditKind.DECIDED,
    Status.EXPIRED: AuditKind.EXPIRED,
    Status.CANCELLED: AuditKind.CANCELLED,
}
"""The audit entry a request's final transition writes, by final status."""
MAX_BACKOFF = RetryPolicy().max_delay
"""The dispatcher's default cap on one retry delay."""
SHOWN_LIMIT = 50
"""Violations quoted in the assertion message (the count is always given in full)."""

_STATUS_WORD = re.compile(
    r"Status\b.{0,40}?\b(Pending|Approved|Denied|Expired|Cancelled)\b", re.DOTALL
)
_MAIL_DECIDED = re.compile(r"Decided: (Approved|Denied|Expired|Cancelled)\b")
"""How an email outcome message begins (a mail cannot be edited: the outcome is a new
message in the card's thread, whose text opens with this line)."""


@dataclass(frozen=True)
class InvariantReport:
    """What :func:`check_invariants` looked at (all of it held)."""

    requests: int
    pending: int
    final: int
    votes: int
    audit_entries: int
    outbox: Mapping[str, int]
    """Outbox rows by state (``pending``, ``sent``, ``dead``)."""
    cards_checked: int
    delivered_checked: int


async def check_invariants(
    store: SqlStore,
    *,
    now: datetime,
    sweep_interval: timedelta,
    accepted: Iterable[str] = (),
    max_backoff: timedelta = MAX_BACKOFF,
    delivered_to_agent: Iterable[str] | None = None,
    cards: Mapping[str, Mapping[str, str]] | None = None,
) -> InvariantReport:
    """Check the invariants; raise ``AssertionError`` listing every violation.

    Args:
        store: the store the scenario ran on.
        now: the scenario clock's current time (a ManualClock's, or the real one).
        sweep_interval: the deadline sweeper's interval; a due step may be this late twice.
        accepted: ids of the requests the API answered 2xx for (invariant 1).
        max_backoff: the retry policy's cap; no pending row waits longer past its time (4).
        delivered_to_agent: ids whose final state reached the agent, by long-poll or webhook;
            when given, every final request must be among them (5).
        cards: request id -> {destination key: status shown on that card}, read back from the
            fake platforms; when given, every posted card of a final request must be in it
            showing the final status (6).
    """
    async with store.read() as reader:
        requests = await reader.list_requests(limit=10**9)
        entries = await reader.audit_entries()
        outbox_rows = (await reader.conn.execute(select(OUTBOX))).all()
        delivery_rows = (await reader.conn.execute(select(DELIVERIES))).all()
    verification = await store.verify_audit()

    problems: list[str] = []
    by_id = {request.id: request for request in requests}

    # 1. Every accepted request has its row.
    for request_id in accepted:
        if request_id not in by_id:
            problems.append(f"[1] request {request_id} was accepted (2xx) but has no row")

    # 2. Nothing is left overdue.
    # A step may be up to (and including) two sweep intervals late.
    overdue_since = now - 2 * sweep_interval - timedelta(microseconds=1)
    for request in requests:
        step = plan_step(request, overdue_since)
        if step is not None:
            problems.append(
                f"[2] request {request.id} is {request.status.value} with a {_step_name(step)} "
                f"due more than two sweep intervals ({2 * sweep_interval}) before {now}"
            )

    # 3. One audit entry per transition, and a chain that verifies.
    problems.extend(_audit_problems(requests, by_id, entries))
    if not verification.ok:
        assert verification.broken is not None
        problems.append(
            f"[3] the audit chain breaks at entry {verification.broken.seq}: "
            f"{verification.broken.reason}"
        )

    # 4. Nothing stuck in the outbox; every dead row says why.
    states: Counter[str] = Counter()
    webhook_rows: Counter[str] = Counter()
    for row in outbox_rows:
        states[row.state] += 1
        if row.kind == WEBHOOK:
            webhook_rows[row.request_id] += 1
        if row.state == PENDING_ROW and row.next_attempt_at < now - max_backoff:
            problems.append(
                f"[4] outbox row {row.id} ({row.kind} to {row.destination} for "
                f"{row.request_id}) is pending since {row.next_attempt_at}, longer than the "
                f"maximum backoff {max_backoff} (attempts {row.attempts}, last error "
                f"{row.last_error!r})"
            )
        elif row.state == DEAD and not (row.last_error or "").strip():
            problems.append(f"[4] outbox row {row.id} was dead-lettered without an error")
        elif row.state not in (PENDING_ROW, SENT, DEAD):
            problems.append(f"[4] outbox row {row.id} has unknown state {row.state!r}")

    # 5. Every decision reaches the agent.
    delivered = None if delivered_to_agent is None else set(delivered_to_agent)
    for request in requests:
        if request.status.is_final and delivered is not None and request.id not in delivered:
            problems.append(
                f"[5] request {request.id} is {request.status.value} but its agent never heard"
            )
        if request.callback_url:
            expected = 1 if request.status.is_final else 0
            if webhook_rows[request.id] != expected:
                problems.append(
                    f"[5] request {request.id} ({request.status.value}, with a callback URL) "
                    f"has {webhook_rows[request.id]} webhook rows, not {expected}"
                )

    # 6. Every posted card of a final request shows its final state.
    cards_checked = 0
    if cards is not None:
        for row in delivery_rows:
            carded = by_id.get(row.request_id)
            if carded is None or not _is_card(row.ref) or not carded.status.is_final:
                continue
            cards_checked += 1
            shown = cards.get(row.request_id, {}).get(row.destination)
            if shown is None:
                problems.append(
                    f"[6] the card of {carded.status.value} request {row.request_id} at "
                    f"{row.destination} ({row.ref}) was not found on the platform"
                )
            elif shown.lower() != carded.status.value:
                problems.append(
                    f"[6] the card of request {row.request_id} at {row.destination} shows "
                    f"{shown!r}, but the request is {carded.status.value}"
                )

    if problems:
        listing = "\n".join(problems[:SHOWN_LIMIT])
        more = len(problems) - SHOWN_LIMIT
        tail = f"\n... and {more} more" if more > 0 else ""
        raise AssertionError(f"{len(problems)} invariant violation(s):\n{listing}{tail}")
    final = sum(1 for request in requests if request.status.is_final)
    return InvariantReport(
        requests=len(requests),
        pending=len(requests) - final,
        final=final,
        votes=sum(len(request.votes) for request in requests),
        audit_entries=verification.checked,
        outbox=dict(states),
        cards_checked=cards_checked,
        delivered_checked=0 if delivered is None else final,
    )


def _step_name(step: TimeOut | Escalate | Remind) -> str:
    if isinstance(step, TimeOut):
        return "timeout"
    if isinstance(step, Escalate):
        return f"escalation to level {step.to_level}"
    return "reminder"


def _decided_by_vote(request: ApprovalRequest) -> bool:
    """Whether the request's final transition was a click (its entry replaces a vote entry)."""
    decision = request.decision
    return (
        request.status in (Status.APPROVED, Status.DENIED)
        and decision is not None
        and any(vote.person == decision.by for vote in request.votes)
    )


def _audit_problems(
    requests: list[ApprovalRequest],
    by_id: Mapping[str, ApprovalRequest],
    entries: list[AuditEntry],
) -> list[str]:
    problems: list[str] = []
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    escalations: dict[str, list[dict[str, Any]]] = defaultdict(list)
    final_entries: dict[str, list[AuditEntry]] = defaultdict(list)
    final_kinds = set(FINAL_KINDS.values())
    for entry in entries:
        if entry.request_id is None:
            continue
        kinds[entry.request_id][entry.kind] += 1
        if entry.kind == AuditKind.ESCALATED:
            escalations[entry.request_id].append(json.loads(entry.data))
        if entry.kind in final_kinds:
            final_entries[entry.request_id].append(entry)
        transition = entry.kind in final_kinds or entry.kind in (
            AuditKind.CREATED,
            AuditKind.VOTED,
            AuditKind.ESCALATED,
        )
        if transition and entry.request_id not in by_id:
            problems.append(
                f"[3] audit entry {entry.seq} ({entry.kind}) names request {entry.request_id}, "
                "which has no row"
            )
    for request in requests:
        counted = kinds[request.id]
        if counted[AuditKind.CREATED] != 1:
            problems.append(
                f"[3] request {request.id} has {counted[AuditKind.CREATED]} creation entries"
            )
        finals = final_entries[request.id]
        if request.status.is_final:
            expected_kind = FINAL_KINDS[request.status]
            if len(finals) != 1:
                problems.append(
                    f"[3] {request.status.value} request {request.id} has {len(finals)} final "
                    "audit entries, not 1"
                )
            elif finals[0].kind != expected_kind or (
                json.loads(finals[0].data).get("status") != request.status.value
            ):
                problems.append(
                    f"[3] request {request.id} is {request.status.value} but its final entry "
                    f"says {finals[0].kind} {finals[0].data}"
                )
        elif finals:
            problems.append(
                f"[3] pending request {request.id} has final audit entries: "
                f"{[entry.kind for entry in finals]}"
            )
        expected_votes = len(request.votes) - (1 if _decided_by_vote(request) else 0)
        if counted[AuditKind.VOTED] != expected_votes:
            problems.append(
                f"[3] request {request.id} has {len(request.votes)} votes and "
                f"{counted[AuditKind.VOTED]} vote entries (expected {expected_votes})"
            )
        level = 0
        for step in escalations[request.id]:
            if step.get("from_level") != level or step.get("to_level", -1) <= level:
                problems.append(
                    f"[3] request {request.id} escalated {step.get('from_level')} -> "
                    f"{step.get('to_level')} while at level {level}"
                )
            level = int(step.get("to_level", level))
        if level != request.level:
            problems.append(
                f"[3] request {request.id} is at level {request.level} but its escalation "
                f"entries lead to level {level}"
            )
    return problems


def _is_card(ref: Mapping[str, Any] | None) -> bool:
    """Whether a delivery's ``ref`` names a posted message (not unsent, not gathered into
    a flood-guard digest, whose marker is ``{"digest": ...}``)."""
    return ref is not None and "digest" not in ref


def shown_status(rendered: str) -> str | None:
    """The status word a rendered card shows after its "Status" label, lower case.

    Works on the text of a Slack message (blocks included), a Telegram message (HTML) and
    a Discord message (content and embed fields), which all label the status line, and on
    the text part of an email outcome message, which opens with "Decided: <status>".
    """
    found = _MAIL_DECIDED.match(rendered) or _STATUS_WORD.search(rendered)
    return found.group(1).lower() if found else None


async def rendered_cards(
    store: SqlStore,
    read: Callable[[str, dict[str, Any]], str | Awaitable[str | None] | None],
) -> dict[str, dict[str, str]]:
    """Read back every posted card: request id -> {destination key: status shown}.

    Args:
        read: given a delivery's destination key and stored message reference, the card's
            current text as the fake platform holds it (``None`` when it has no such card).
    """
    async with store.read() as reader:
        rows = (await reader.conn.execute(select(DELIVERIES))).all()
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        if not _is_card(row.ref):
            continue
        text = read(row.destination, row.ref)
        if isinstance(text, Awaitable):
            text = await text
        if text is None:
            continue
        status = shown_status(text)
        found[row.request_id][row.destination] = status or "(no status shown)"
    return dict(found)


CardReader = Callable[[str, dict[str, Any]], str | None]
"""Given a delivery's destination key and message reference, the card's text on a fake."""


def slack_reader(fake: Any) -> CardReader:
    """Read cards back from the fake Slack (``tests/fakes/slack.py``)."""

    def read(_destination: str, ref: dict[str, Any]) -> str | None:
        message = fake.messages.get((str(ref.get("channel")), str(ref.get("ts"))))
        return None if message is None else str(message.all_text)

    return read


def telegram_reader(fake: Any) -> CardReader:
    """Read cards back from the fake Bot API (``tests/fakes/telegram.py``)."""

    def read(_destination: str, ref: dict[str, Any]) -> str | None:
        key = (int(ref.get("chat_id", 0)), int(ref.get("message_id", 0)))
        message = fake.messages.get(key)
        return None if message is None else str(message.text)

    return read


def discord_reader(fake: Any) -> CardReader:
    """Read cards back from the fake Discord (``tests/fakes/discord.py``)."""

    def read(_destination: str, ref: dict[str, Any]) -> str | None:
        message = fake.messages.get((str(ref.get("channel_id")), str(ref.get("message_id"))))
        return None if message is None else str(message.all_text)

    return read


def by_platform(**readers: CardReader) -> CardReader:
    """One reader over several fakes, chosen by the destination's platform."""

    def read(destination: str, ref: dict[str, Any]) -> str | None:
        reader = readers.get(destination.split(":", 1)[0])
        return None if reader is None else reader(destination, ref)

    return read
