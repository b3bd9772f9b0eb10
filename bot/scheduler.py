"""Drives the deadline sweeper: a steady interval plus an exact wake-up (APScheduler).

The database is the source of truth for deadlines; the scheduler holds nothing a restart
would lose. A loop sweeps every ``interval`` seconds (so a lost wake-up costs at most one
interval), and an APScheduler job wakes the sweeper exactly at the nearest known deadline.
The loop sleeps on the event loop's monotonic clock, not on wall-clock times as
APScheduler's interval trigger does: after the wall clock is stepped back, that trigger
would wait out the whole step before sweeping again. An hourly APScheduler job deletes rows
that have served their purpose (``approvals.retention``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from approvals.model import ApprovalRequest
from approvals.retention import PURGE_INTERVAL, Purged, purge_expired
from approvals.service import ApprovalService

log = logging.getLogger(__name__)

SWEEP_JOB = "sweep"
WAKEUP_JOB = "wakeup"
HOUSEKEEPING_JOB = "housekeeping"


class DeadlineScheduler:
    """Runs ``service.process_due`` on an interval and at the nearest deadline."""

    def __init__(
        self, service: ApprovalService, *, interval: float = 1.0, batch: int = 200
    ) -> None:
        self._service = service
        self._interval = interval
        self._batch = batch
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._lock = asyncio.Lock()
        self._wakeup_at: datetime | None = None
        self._stopping = asyncio.Event()
        self._every_interval: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self.sweeps = 0

    @property
    def wakeup_at(self) -> datetime | None:
        """When the exact wake-up job is set to run, if one is planned."""
        return self._wakeup_at

    def start(self) -> None:
        self._stopping.clear()
        self._every_interval = asyncio.create_task(self._sweep_every_interval(), name=SWEEP_JOB)
        self._scheduler.add_job(
            self.housekeeping,
            "interval",
            seconds=PURGE_INTERVAL.total_seconds(),
            id=HOUSEKEEPING_JOB,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        self._service.subscribe(self._on_change)

    async def stop(self) -> None:
        if self._on_change in self._service.listeners:
            self._service.unsubscribe(self._on_change)
        self._stopping.set()
        if self._every_interval is not None:
            await self._every_interval  # an in-flight sweep finishes its transaction first
            self._every_interval = None
        if self._scheduler.running:
            self._scheduler.remove_all_jobs()  # no new sweeps from here on
            async with self._lock:  # let an in-flight sweep finish its transaction
                self._scheduler.shutdown(wait=False)

    async def _sweep_every_interval(self) -> None:
        while not self._stopping.is_set():
            # Cleared before the sweep, so a wake-up that fires during it is not lost.
            self._woken.clear()
            await self.sweep()
            waiters = {
                asyncio.ensure_future(self._woken.wait()),
                asyncio.ensure_future(self._stopping.wait()),
            }
            _done, pending = await asyncio.wait(
                waiters, timeout=self._interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()

    async def _wake(self) -> None:
        """The exact wake-up job: the loop sweeps now instead of at its next interval.

        The job only signals; the one loop does every sweep, so a wake-up planned while a
        sweep runs (the next deadline is often milliseconds away under load) is never
        skipped as an instance of a job still running.
        """
        self._wakeup_at = None
        self._woken.set()

    async def sweep(self) -> int:
        """Handle everything due now, then plan the wake-up for what is due next."""
        handled = 0
        async with self._lock:
            self._wakeup_at = None
            try:
                while True:
                    count = await self._service.process_due(self._batch)
                    handled += count
                    # Stopping ends a backlog between batches: each batch is committed, and
                    # whatever is left is still due in the database for the next start.
                    if count < self._batch or self._stopping.is_set():
                        break
                next_due = await self._service.store.next_due_at()
            except Exception:
                log.exception("deadline sweep failed; the next interval tries again")
                return handled
            finally:
                self.sweeps += 1
        if next_due is not None:
            self._plan_wakeup(next_due)
        return handled

    async def housekeeping(self) -> Purged | None:
        """Delete expired sign-ins, old finished outbox rows and old idempotency keys."""
        try:
            purged = await purge_expired(self._service.store, self._service.clock.now())
        except Exception:
            log.exception("housekeeping failed; the next run tries again")
            return None
        if purged.total:
            log.info(
                "housekeeping deleted %s sign-in links, %s sessions, %s outbox rows, "
                "%s idempotency keys, %s spent decision links",
                purged.login_tokens,
                purged.web_sessions,
                purged.outbox_rows,
                purged.idempotency_keys,
                purged.spent_links,
            )
        return purged

    def _on_change(self, request: ApprovalRequest) -> None:
        if request.next_due_at is not None:
            self._plan_wakeup(request.next_due_at)

    def _plan_wakeup(self, moment: datetime) -> None:
        if self._wakeup_at is not None and self._wakeup_at <= moment:
            return
        if not self._scheduler.running:
            return
        self._wakeup_at = moment
        self._scheduler.add_job(
            self._wake,
            "date",
            run_date=moment,
            id=WAKEUP_JOB,
            replace_existing=True,
            misfire_grace_time=None,
        )

    def drop_wakeup(self) -> None:
        """Forget the exact wake-up (what a lost job looks like; the interval still sweeps)."""
        if self._scheduler.get_job(WAKEUP_JOB) is not None:
            self._scheduler.remove_job(WAKEUP_JOB)
        self._wakeup_at = None
