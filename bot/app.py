"""The composition root: builds the whole application from config, in one place.

Tests build the same application with a manual clock or recording adapters instead of the
real ones; nothing else in signoff constructs services, stores or adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from approvals.clock import Clock, SystemClock
from approvals.outbox import OutboxDispatcher
from approvals.ports import Adapter
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from bot.runtime import Runtime
from bot.scheduler import DeadlineScheduler
from config import LoadedConfig


@dataclass(frozen=True)
class AppOptions:
    """Knobs that are not part of the config file (tests and benchmarks turn them).

    Attributes:
        sweep_interval: seconds between deadline sweeps (the upper bound on lateness when
            the exact wake-up is lost).
        adapters: adapters to use instead of building them from config.
    """

    sweep_interval: float = 1.0
    adapters: Mapping[str, Adapter] | None = None
    clock: Clock = field(default_factory=SystemClock)


def rules_from(config: LoadedConfig) -> Rules:
    return Rules(policies=config.policy_set(), directory=config.directory())


def build_runtime(config: LoadedConfig, options: AppOptions | None = None) -> Runtime:
    """Everything signoff runs, wired together from ``config``."""
    options = options or AppOptions()
    store = SqlStore(config.settings.database.url)
    service = ApprovalService(store, rules_from(config), options.clock)
    adapters = dict(options.adapters or {})
    dispatcher = OutboxDispatcher(store, adapters, options.clock)
    scheduler = DeadlineScheduler(service, interval=options.sweep_interval)
    return Runtime(
        config=config,
        store=store,
        service=service,
        dispatcher=dispatcher,
        scheduler=scheduler,
        adapters=adapters,
    )
