"""The deadline scheduler: stopping ends a sweep backlog between batches."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from bot.scheduler import DeadlineScheduler


class StopAfterFirstBatch:
    """The service, except that the scheduler is asked to stop once one batch is done."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self.scheduler: DeadlineScheduler | None = None
        self.batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    async def process_due(self, limit: int = 200) -> int:
        handled = await self._service.process_due(limit)
        self.batches += 1
        assert self.scheduler is not None
        self.scheduler._stopping.set()
        return handled


async def test_stopping_ends_a_backlog_between_batches_and_leaves_the_rest_due(
    sqlite_service, clock
):
    ids = []
    for n in range(12):
        created = await sqlite_service.create(
            CreateCommand(agent="deploy-bot", action="cache.flush", title=f"#{n}", params={"n": n})
        )
        assert isinstance(created, Created)
        ids.append(created.request.id)
    clock.advance(timedelta(minutes=11))
    proxy = StopAfterFirstBatch(sqlite_service)
    scheduler = DeadlineScheduler(proxy, interval=60, batch=5)  # type: ignore[arg-type]
    proxy.scheduler = scheduler

    assert await scheduler.sweep() == 5
    assert proxy.batches == 1
    statuses = [(await sqlite_service.get(i)).status for i in ids]
    assert statuses.count(Status.EXPIRED) == 5
    assert statuses.count(Status.PENDING) == 7

    scheduler._stopping.clear()
    assert await sqlite_service.process_due(200) == 7
