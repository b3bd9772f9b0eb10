"""F6: a scheduler job is lost; the interval sweep still resolves every request in time.

The application runs on the real clock with the production sweep interval. With every exact
wake-up job lost (none is ever planned), each request still times out within one interval
of its deadline; with one sweep failing outright, the next interval picks it up.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from bot.app import AppOptions, build_runtime
from bot.runtime import Runtime
from config import load_config_text
from tests.reliability.invariants import check_invariants
from tests.waiting import wait_for

INTERVAL = timedelta(seconds=1)
"""The sweep interval (the production default)."""
SLACK = timedelta(milliseconds=500)
"""Allowed on top of the interval: the event loop's own latency on a busy machine."""
REQUESTS = 5

CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
policies:
  - name: default
    min_timeout: 1s
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


async def _started(tmp_path) -> Runtime:
    config = load_config_text(CONFIG.format(db=tmp_path / "f6.db"), "signoff.yaml")
    runtime = build_runtime(config, AppOptions(sweep_interval=INTERVAL.total_seconds()))
    await runtime.start()
    return runtime


async def _create_staggered(runtime: Runtime) -> list[str]:
    """Requests whose deadlines fall 1.0, 1.3, 1.6 ... seconds from now."""
    ids = []
    for n in range(REQUESTS):
        created = await runtime.service.create(
            CreateCommand(
                agent="a",
                action="deploy.web",
                title=f"Deploy {n}",
                params={"deploy": n},
                timeout=timedelta(seconds=1) + n * timedelta(milliseconds=300),
            )
        )
        assert isinstance(created, Created), created
        assert created.is_new, created
        ids.append(created.request.id)
    return ids


async def _lateness(runtime: Runtime, ids: list[str]) -> list[timedelta]:
    async def all_denied() -> bool:
        for request_id in ids:
            request = await runtime.service.get(request_id)
            if request is None or request.status is not Status.DENIED:
                return False
        return True

    await wait_for(all_denied, within=15)
    late = []
    for request_id in ids:
        request = await runtime.service.get(request_id)
        assert request is not None
        assert request.decided_at is not None
        assert request.decided_at >= request.deadline, "timed out before its deadline"
        late.append(request.decided_at - request.deadline)
    return late


async def test_F6_with_every_exact_wakeup_lost_the_interval_resolves_within_one_interval(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """F6: no wake-up job ever runs; each request times out within one sweep interval."""
    runtime = await _started(tmp_path)
    try:
        monkeypatch.setattr(runtime.scheduler, "_plan_wakeup", lambda moment: None)
        runtime.scheduler.drop_wakeup()
        ids = await _create_staggered(runtime)
        assert runtime.scheduler.wakeup_at is None
        late = await _lateness(runtime, ids)
        assert max(late) <= INTERVAL + SLACK, late
        await check_invariants(
            runtime.store, now=datetime.now(UTC), sweep_interval=INTERVAL, accepted=ids
        )
        print(
            f"F6 wake-ups lost: lateness {[round(d.total_seconds(), 2) for d in late]} s "
            f"(interval {INTERVAL.total_seconds()} s)"
        )
    finally:
        await runtime.stop()


async def test_F6_a_sweep_that_fails_is_made_up_by_the_next_interval(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """F6: the sweep job fails once after the first deadline; the next one resolves it."""
    runtime = await _started(tmp_path)
    try:
        monkeypatch.setattr(runtime.scheduler, "_plan_wakeup", lambda moment: None)
        runtime.scheduler.drop_wakeup()
        real_process_due = runtime.service.process_due
        failures: list[datetime] = []

        async def failing_once(limit: int = 200) -> int:
            due = await runtime.store.next_due_at()  # None while nothing is pending
            if not failures and due is not None and due <= datetime.now(UTC):
                failures.append(datetime.now(UTC))
                raise RuntimeError("the sweep job was lost")
            return await real_process_due(limit)

        monkeypatch.setattr(runtime.service, "process_due", failing_once)
        ids = await _create_staggered(runtime)
        with caplog.at_level(logging.ERROR, logger="bot.scheduler"):
            late = await _lateness(runtime, ids)
        assert failures, "no sweep failed"
        assert "deadline sweep failed" in caplog.text
        first = await runtime.service.get(ids[0])
        assert first is not None
        assert first.decided_at is not None
        assert first.decided_at - failures[0] <= INTERVAL + SLACK
        assert max(late) <= 2 * INTERVAL + SLACK, late
        await check_invariants(
            runtime.store, now=datetime.now(UTC), sweep_interval=INTERVAL, accepted=ids
        )
        print(
            f"F6 one failed sweep: lateness {[round(d.total_seconds(), 2) for d in late]} s; "
            f"the failed one was resolved {(first.decided_at - failures[0]).total_seconds():.2f} "
            "s after the failure"
        )
    finally:
        await runtime.stop()
