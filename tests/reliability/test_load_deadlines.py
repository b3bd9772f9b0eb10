"""L7: thousands of pending requests with deadlines spread over an hour, swept as the clock
moves (RELIABILITY.md: 10,000; 3,000 here, which fits a busy 2-core machine in about a
minute; the size is a module constant).

The requests are written the way ``ApprovalService.create`` writes them (the row and its
creation audit entry; their policies notify only the web inbox, so there is nothing to
queue), in large transactions, so that seeding takes seconds. A quarter of them escalate
half-way. Then a manual clock is advanced one sweep interval at a time and the sweeper
(``process_due``) runs, as the scheduler runs it. Every request must be acted on (escalated,
then expired or denied) no earlier than it is due and within one sweep interval of it, each
step exactly once; a sweep's work must take less wall time than the interval plus 2 s, so
a real sweeper never falls behind. Ends with the invariant checker.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from approvals.audit import AuditKind
from approvals.clock import ManualClock
from approvals.deadlines import schedule_after
from approvals.directory import Directory, Person
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.policy import Level, Policy, PolicySet, TimeoutOutcome
from approvals.service import Rules, audit_created
from approvals.store import SqlStore, WriteTx
from tests.reliability.invariants import check_invariants
from tests.world import build_test_runtime

REQUESTS = 3_000
ESCALATING_EVERY = 4
"""Every fourth request has two levels and escalates half-way to its deadline."""
SPREAD = timedelta(hours=1)
SWEEP = timedelta(seconds=15)
"""The sweep interval on the manual clock (production sweeps every second; 15 s keeps the
run short, with about 12 deadlines a sweep)."""
LATE_BY_AT_MOST = timedelta(seconds=2)
"""Wall time a sweep may take beyond its interval (RELIABILITY.md: one sweep + 2 s)."""
SEED_BATCH = 500
MIN = timedelta(minutes=1)

EXPIRING = Policy(
    name="expiring",
    levels=(Level(approvers=("alice",), notify=("web",), timeout=2 * 60 * MIN),),
    on_timeout=TimeoutOutcome.EXPIRE,
)
ESCALATING = Policy(
    name="escalating",
    levels=(
        Level(approvers=("alice",), notify=("web",), timeout=30 * MIN),
        Level(approvers=("bob",), notify=("web",), timeout=30 * MIN),
    ),
    on_timeout=TimeoutOutcome.DENY,
)


def rules() -> Rules:
    directory = Directory(people={"alice": Person("alice"), "bob": Person("bob")})
    return Rules(PolicySet((ESCALATING, EXPIRING)), directory)


def seeded(number: int, start: datetime, template: ApprovalRequest) -> ApprovalRequest:
    """Request ``number``: deadlines (and escalations) spread evenly over the hour."""
    share = (number + 1) / REQUESTS
    if number % ESCALATING_EVERY == 0:
        # Created up to half an hour ago: it escalates at created + 30 min (after ``start``)
        # and times out at created + 60 min.
        created = start - 30 * MIN + SPREAD / 2 * share
        request = replace(
            template,
            policy=ESCALATING,
            created_at=created,
            deadline=created + 60 * MIN,
        )
    else:
        request = replace(
            template, policy=EXPIRING, created_at=start, deadline=start + SPREAD * share
        )
    plan = schedule_after(request, 0, request.created_at)
    return replace(
        request,
        id=f"l7-{number:05d}",
        next_due_at=plan.next_due_at,
        next_remind_at=plan.next_remind_at,
    )


async def seed(store: SqlStore, start: datetime) -> list[ApprovalRequest]:
    template = ApprovalRequest(
        id="template",
        agent="deadline-bot",
        action="deploy.web",
        title="Deploy",
        details="",
        params={},
        payload_sha256="0" * 64,
        requested_by=None,
        policy=EXPIRING,
        status=Status.PENDING,
        level=0,
        created_at=start,
        deadline=start,
        next_due_at=None,
        next_remind_at=None,
    )
    requests = [seeded(number, start, template) for number in range(REQUESTS)]
    for first in range(0, REQUESTS, SEED_BATCH):

        def _change(
            tx: WriteTx, batch: list[ApprovalRequest] = requests[first : first + SEED_BATCH]
        ) -> None:
            for request in batch:
                tx.insert_request(request)
                audit_created(tx, request, request.created_at)

        await store.run(_change)
    return requests


@pytest.mark.slow
async def test_L7_deadlines_spread_over_an_hour_are_each_met_once_and_never_early(
    sqlite_store: SqlStore, record_property
):
    clock = ManualClock()
    start = clock.now()
    began = time.monotonic()
    requests = await seed(sqlite_store, start)
    seeded_in = time.monotonic() - began
    service = build_test_runtime(sqlite_store, clock, rules()).service

    sweeps: list[float] = []
    handled = 0
    while clock.now() < start + SPREAD + 2 * SWEEP:
        clock.advance(SWEEP)
        began = time.monotonic()
        while batch := await service.process_due():
            handled += batch
        sweeps.append(time.monotonic() - began)

    async with sqlite_store.read() as reader:
        entries = await reader.audit_entries()
    acted: dict[str, list[tuple[str, datetime]]] = {}
    for entry in entries:
        if entry.request_id and entry.kind != AuditKind.CREATED:
            acted.setdefault(entry.request_id, []).append((entry.kind, entry.at))
    problems = []
    for request in requests:
        steps = acted.get(request.id, [])
        due = [request.deadline]
        kinds = [AuditKind.EXPIRED]
        if request.policy is ESCALATING:
            due = [request.created_at + 30 * MIN, request.deadline]
            kinds = [AuditKind.ESCALATED, AuditKind.DECIDED]
        if [kind for kind, _at in steps] != kinds:
            problems.append(f"{request.id}: steps {steps}, expected {kinds}")
            continue
        for (kind, at), when in zip(steps, due, strict=True):
            if not when <= at <= when + SWEEP:
                problems.append(f"{request.id}: {kind} at {at}, due {when}")
    assert not problems, "\n".join(problems[:20])

    slowest = max(sweeps)
    figures = (
        f"L7: {REQUESTS} requests seeded in {seeded_in:.1f} s; {len(sweeps)} sweeps of "
        f"{SWEEP.total_seconds():.0f} s handled {handled} steps; sweep wall time p50 "
        f"{sorted(sweeps)[len(sweeps) // 2] * 1000:.0f} ms, max {slowest * 1000:.0f} ms"
    )
    print(figures)
    record_property("L7", figures)
    assert slowest < (SWEEP + LATE_BY_AT_MOST).total_seconds(), figures
    report = await check_invariants(sqlite_store, now=clock.now(), sweep_interval=SWEEP)
    assert report.final == REQUESTS
    assert {r.status for r in await _all(sqlite_store)} == {Status.EXPIRED, Status.DENIED}


async def _all(store: SqlStore) -> list[ApprovalRequest]:
    async with store.read() as reader:
        return await reader.list_requests(limit=REQUESTS + 1)
