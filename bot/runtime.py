"""Start and stop order for a running signoff process, and its signal handling.

Start: migrate the database, record the loaded config in the audit log, start adapters,
then the deadline scheduler and the outbox dispatcher. Stop (SIGINT/SIGTERM) runs the other
way round: stop taking work, let in-flight transactions finish, close adapters and the
database.

On PostgreSQL several processes may share the database. Then this process also listens for
the others' changes (:class:`~approvals.store.notify.NotificationListener`) and competes for the
singleton connections (:class:`~bot.leadership.SingletonLocks`): adapters whose inbound
connection is one-per-token start with it closed, and only the lock holder opens it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from approvals.access import AccessStore
from approvals.audit import AuditKind
from approvals.outbox import OutboxDispatcher
from approvals.ports import Adapter, SingletonInbound
from approvals.service import ApprovalService
from approvals.store import SqlStore
from approvals.store.notify import NotificationListener
from approvals.webhooks import WebhookSender
from bot.api import AgentApi
from bot.leadership import HELD, SingletonLocks
from bot.metrics import Metrics
from bot.scheduler import DeadlineScheduler
from bot.waiters import RequestWaiters
from config import LoadedConfig
from signoff_client.canonical import canonical_json

if TYPE_CHECKING:
    from adapters.web import WebInbox

log = logging.getLogger(__name__)


class Runtime:
    """The running parts of one signoff process."""

    def __init__(
        self,
        *,
        config: LoadedConfig,
        store: SqlStore,
        service: ApprovalService,
        dispatcher: OutboxDispatcher,
        scheduler: DeadlineScheduler,
        adapters: Mapping[str, Adapter],
        access: AccessStore,
        waiters: RequestWaiters,
        metrics: Metrics,
        agent_api: AgentApi,
        web_inbox: WebInbox | None = None,
        webhooks: WebhookSender | None = None,
        notifications: NotificationListener | None = None,
        singleton_locks: SingletonLocks | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.service = service
        self.dispatcher = dispatcher
        self.scheduler = scheduler
        self.adapters = dict(adapters)
        self.access = access
        self.waiters = waiters
        self.metrics = metrics
        self.agent_api = agent_api
        self.web_inbox = web_inbox
        self.webhooks = webhooks
        self.notifications = notifications
        self.singleton_locks = singleton_locks
        self.metrics.long_polls_waiting.set_function(lambda: float(waiters.waiting))
        self._stop = asyncio.Event()
        self._dispatch_task: asyncio.Task[None] | None = None
        self._started_adapters: list[Adapter] = []
        self.on_started: list[Callable[[Runtime], Awaitable[None]]] = []
        self.on_adapter_replaced: list[Callable[[str, Adapter | None, Adapter | None], None]] = []
        """Called with (platform, old, new) after :meth:`replace_adapter` (the HTTP app swaps
        the adapter's routes)."""
        self.readiness_details: dict[str, Any] = {}
        """Extra facts for ``/readyz``, such as a config reload that was refused."""

    def config_fingerprint(self) -> str:
        """SHA-256 of the config file as read, recorded on every load (for the built-in
        default, of the effective settings with secrets masked)."""
        if self.config.file_sha256 is not None:
            return self.config.file_sha256
        settings = self.config.settings.model_dump(mode="json")
        return hashlib.sha256(canonical_json(settings)).hexdigest()

    async def start(self) -> None:
        await self.store.migrate()
        await self.store.run(
            lambda tx: tx.append_audit(
                AuditKind.CONFIG_LOADED,
                at=self.service.clock.now(),
                actor="signoff",
                data={"source": self.config.source, "sha256": self.config_fingerprint()},
            )
        )
        for platform, adapter in self.adapters.items():
            if self._lock_governs(platform) and isinstance(adapter, SingletonInbound):
                # Only the lock holder opens the inbound connection (see bot.leadership).
                await adapter.start(self.service, inbound=False)
            else:
                await adapter.start(self.service)
            self._started_adapters.append(adapter)
        self.store.writer.on_messages_queued(self.dispatcher.wake)
        self.service.subscribe(self.waiters.on_change)
        self.service.subscribe(self.metrics.on_change)
        self.scheduler.start()
        self._dispatch_task = asyncio.create_task(
            self.dispatcher.run_forever(self._stop), name="outbox-dispatcher"
        )
        if self.notifications is not None:
            await self.notifications.start()
        if self.singleton_locks is not None:
            await self.singleton_locks.start()
        for hook in self.on_started:
            await hook(self)

    def _lock_governs(self, platform: str) -> bool:
        locks = self.singleton_locks
        return locks is not None and platform in locks.status()

    def singletons(self) -> dict[str, str]:
        """For each one-per-token inbound connection: ``held`` here, or ``standby``.

        Without locks (SQLite: one process) this process holds every one it runs.
        """
        if self.singleton_locks is not None:
            return self.singleton_locks.status()
        return {
            platform: HELD
            for platform, adapter in sorted(self.adapters.items())
            if isinstance(adapter, SingletonInbound) and adapter.inbound_is_singleton
        }

    async def replace_adapter(self, platform: str, adapter: Adapter | None) -> bool:
        """Swap ``platform``'s adapter while running (a config reload changed its settings).

        The old adapter stops before the new one starts (one poller per bot token), the
        outbox delivers through the new one from then on, and ``on_adapter_replaced`` hooks
        run. ``None`` removes the platform. Returns ``False``, changing nothing, when the
        platform's inbound connection is shared among processes by lock: that takes a
        restart of each process.
        """
        shared = self.singleton_locks is not None and (
            self._lock_governs(platform)
            or (isinstance(adapter, SingletonInbound) and adapter.inbound_is_singleton)
        )
        if shared:
            return False
        old = self.adapters.pop(platform, None)
        if old is not None and old in self._started_adapters:
            self._started_adapters.remove(old)
            try:
                await old.stop()
            except Exception:
                log.exception("adapter %s did not stop cleanly", platform)
        if adapter is not None:
            await adapter.start(self.service)
            self._started_adapters.append(adapter)
            self.adapters[platform] = adapter
        self.dispatcher.use_adapter(platform, adapter)
        for hook in self.on_adapter_replaced:
            hook(platform, old, adapter)
        return True

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self.singleton_locks is not None:
            # No more clicks from here on; another process can take the connections over.
            await self.singleton_locks.stop()
        self.waiters.release_all()
        self.store.writer.remove_messages_listener(self.dispatcher.wake)
        for listener in (self.waiters.on_change, self.metrics.on_change):
            if listener in self.service.listeners:
                self.service.unsubscribe(listener)
        await self.scheduler.stop()
        if self._dispatch_task is not None:
            await self._dispatch_task
        for adapter in reversed(self._started_adapters):
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s did not stop cleanly", adapter.platform)
        self._started_adapters.clear()
        if self.notifications is not None:
            await self.notifications.stop()
        await self.store.close()

    async def run_until_signalled(self) -> None:
        """Start, serve until SIGINT or SIGTERM, then stop gracefully."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, self.request_stop)
        await self.start()
        try:
            await self.wait_stopped()
        finally:
            await self.stop()
