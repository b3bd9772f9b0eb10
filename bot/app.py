"""The composition root: builds the whole application from config, in one place.

Tests build the same application with a manual clock or recording adapters instead of the
real ones; nothing else in signoff constructs services, stores or adapters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from approvals.access import AccessStore
from approvals.clock import Clock, SystemClock
from approvals.egress import EgressPolicy
from approvals.inbox import InboxQueries
from approvals.links import DecisionLinks
from approvals.outbox import DEFAULT_LEASE, OutboxDispatcher
from approvals.ports import Adapter, SingletonInbound
from approvals.receipts import ReceiptSigner
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from approvals.store.notify import REQUEST_FINAL_CHANNEL, NotificationListener, postgres_dsn
from approvals.webhooks import WebhookSender
from bot.api import FAILED_AUTH_LIMIT, AgentApi
from bot.leadership import SingletonLocks
from bot.limits import FailureGuard, RateLimit, RateLimiter, rate_limit
from bot.logging_setup import remember_config_secrets
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.scheduler import DeadlineScheduler
from bot.waiters import RequestWaiters
from config import LoadedConfig
from config.schema import DEFAULT_AGENT_RATE, DEFAULT_API_RATE, SignoffSettings

PER_AGENT_LIMIT = rate_limit(DEFAULT_AGENT_RATE.per_minute, DEFAULT_AGENT_RATE.burst)
"""An agent's agent API limit unless ``agents.NAME.rate`` says otherwise: 600 calls a
minute, bursts of 50."""
OVERALL_LIMIT = rate_limit(DEFAULT_API_RATE.per_minute, DEFAULT_API_RATE.burst)
"""The whole process's agent API limit unless ``server.api_rate`` says otherwise."""
TEST_OUTBOX_LEASE_ENV = "SIGNOFF_TEST_OUTBOX_LEASE_SECONDS"
"""Test-only: a shorter outbox lease for ``signoff serve`` processes in crash tests, so that
rows a killed process had claimed are taken over in seconds. Never set it in production: a
lease shorter than a slow platform call can send a card twice."""


@dataclass(frozen=True)
class AppOptions:
    """Knobs that are not part of the config file (tests and benchmarks turn them).

    Attributes:
        sweep_interval: seconds between deadline sweeps (the upper bound on lateness when
            the exact wake-up is lost).
        adapters: chat adapters to use instead of building them from config.
        web_inbox: serve the web inbox (when the config enables it).
        outbox_lease: how long a claimed outbox row stays this process's alone; ``None``
            means the outbox's default, or the test-only :data:`TEST_OUTBOX_LEASE_ENV`.
        store: an open store to use instead of opening the config's database (the
            runtime closes it when it stops).
        rules: policies and directory to use instead of the config's.
        per_agent_limit, overall_limit: agent API limits to hold every agent and the whole
            process to instead of the config's ``agents.NAME.rate`` and
            ``server.api_rate`` (which then no config reload changes either).
    """

    sweep_interval: float = 1.0
    adapters: Mapping[str, Adapter] | None = None
    clock: Clock = field(default_factory=SystemClock)
    per_agent_limit: RateLimit | None = None
    overall_limit: RateLimit | None = None
    web_inbox: bool = True
    outbox_lease: timedelta | None = None
    store: SqlStore | None = None
    rules: Rules | None = None

    def effective_outbox_lease(self) -> timedelta:
        if self.outbox_lease is not None:
            return self.outbox_lease
        seconds = os.environ.get(TEST_OUTBOX_LEASE_ENV)
        return timedelta(seconds=float(seconds)) if seconds else DEFAULT_LEASE


def rules_from(config: LoadedConfig) -> Rules:
    return Rules(policies=config.policy_set(), directory=config.directory())


def build_chat_adapters(
    config: LoadedConfig, public_url: str, links: DecisionLinks | None = None
) -> dict[str, Adapter]:
    """An adapter for each chat platform configured under ``platforms`` (and for email,
    whose Approve / Deny links are made with ``links``)."""
    platforms = config.settings.platforms
    adapters: dict[str, Adapter] = {}
    if platforms.slack is not None:
        from adapters.slack import build_slack_adapter

        adapters["slack"] = build_slack_adapter(platforms.slack, public_url=public_url)
    if platforms.discord is not None:
        from adapters.discord import build_discord_adapter

        adapters["discord"] = build_discord_adapter(platforms.discord, public_url=public_url)
    if platforms.telegram is not None:
        from adapters.telegram import build_telegram_adapter

        adapters["telegram"] = build_telegram_adapter(platforms.telegram, public_url=public_url)
    if platforms.teams is not None:
        from adapters.teams import build_teams_adapter

        adapters["teams"] = build_teams_adapter(platforms.teams, public_url=public_url)
    if platforms.email is not None:
        from adapters.email import build_email_adapter

        adapters["email"] = build_email_adapter(platforms.email, public_url=public_url, links=links)
    return adapters


def api_limits(settings: SignoffSettings) -> tuple[RateLimit, RateLimit, dict[str, RateLimit]]:
    """The agent API's limits in ``settings``: an unlisted agent's, the whole process's,
    and each configured agent's."""
    overall = settings.server.api_rate
    agents = {
        name: rate_limit(agent.rate.per_minute, agent.rate.burst)
        for name, agent in settings.agents.items()
    }
    return PER_AGENT_LIMIT, rate_limit(overall.per_minute, overall.burst), agents


def api_limiter(settings: SignoffSettings, options: AppOptions) -> RateLimiter:
    """The agent API's limiter: the config's limits, or the options' when given (then the
    limiter does not follow config reloads)."""
    default, overall, agents = api_limits(settings)
    limiter = RateLimiter(
        options.per_agent_limit or default,
        options.overall_limit or overall,
        agents={} if options.per_agent_limit else agents,
    )
    limiter.follows_config = options.per_agent_limit is None and options.overall_limit is None
    return limiter


def build_runtime(config: LoadedConfig, options: AppOptions | None = None) -> Runtime:
    """Everything signoff runs, wired together from ``config``."""
    options = options or AppOptions()
    settings = config.settings
    remember_config_secrets(settings)
    store = options.store or SqlStore(settings.database.url)
    service = ApprovalService(store, options.rules or rules_from(config), options.clock)
    access = AccessStore(store, options.clock)
    metrics = Metrics()
    # One count of failed authentications per address, for API keys, sign-in links and
    # session cookies alike.
    failures = FailureGuard(FAILED_AUTH_LIMIT)
    waiters = RequestWaiters(service)
    adapters: dict[str, Adapter] = dict(options.adapters or {})
    public_url = str(settings.server.public_url)
    for platform, adapter in build_chat_adapters(config, public_url, service.links).items():
        adapters.setdefault(platform, adapter)
    web_inbox = None
    if options.web_inbox and settings.platforms.web.enabled:
        from adapters.web import WebInbox

        web_inbox = WebInbox(
            InboxQueries(service),
            access,
            public_url=public_url,
            failures=failures,
            links=service.links,
        )
        adapters.setdefault("web", web_inbox)
    receipts = ReceiptSigner(store, options.clock)
    webhooks = WebhookSender(
        access, receipts, options.clock, egress=EgressPolicy(settings.webhooks.allow)
    )
    dispatcher = OutboxDispatcher(
        store,
        adapters,
        options.clock,
        lease=options.effective_outbox_lease(),
        on_result=metrics.on_delivery,
        webhooks=webhooks,
        recent_cards=service.recent_cards,
        cards=service.card_for,
    )
    scheduler = DeadlineScheduler(service, interval=options.sweep_interval)
    notifications, singleton_locks = build_cross_process_parts(store, store.url, waiters, adapters)
    agent_api = AgentApi(
        service=service,
        access=access,
        waiters=waiters,
        receipts=receipts,
        limiter=api_limiter(settings, options),
        settings=settings,
        webhooks=webhooks,
        failures=failures,
    )
    return Runtime(
        config=config,
        store=store,
        service=service,
        dispatcher=dispatcher,
        scheduler=scheduler,
        adapters=adapters,
        access=access,
        waiters=waiters,
        metrics=metrics,
        agent_api=agent_api,
        web_inbox=web_inbox,
        webhooks=webhooks,
        notifications=notifications,
        singleton_locks=singleton_locks,
    )


def build_cross_process_parts(
    store: SqlStore,
    url: str,
    waiters: RequestWaiters,
    adapters: Mapping[str, Adapter],
) -> tuple[NotificationListener | None, SingletonLocks | None]:
    """What lets several processes share a PostgreSQL database (nothing on SQLite).

    The listener wakes this process's long-polls for requests other processes decide; the
    locks pick one process for each one-per-token inbound connection.
    """
    if store.is_sqlite:
        return None, None
    dsn = postgres_dsn(url)
    notifications = NotificationListener(
        dsn, {REQUEST_FINAL_CHANNEL: waiters.wake}, on_listening=waiters.recheck_all
    )
    waiters.use_notifications(lambda: notifications.listening)
    singletons = {
        platform: adapter
        for platform, adapter in adapters.items()
        if isinstance(adapter, SingletonInbound) and adapter.inbound_is_singleton
    }
    return notifications, SingletonLocks(dsn, singletons)
