"""Benchmark 4: delivery efficiency — how close signoff sends to what a platform's limits allow.

For each chat platform, a fake from ``tests/`` enforces that platform's send limits per chat
and overall (:mod:`bench.limited_fakes`), with time running ``--scale`` times faster than
the real limits so the run is short, and answers 429 beyond them. signoff is given the same
limits through the adapters' constructor arguments (:mod:`bench.launcher`). The database is
seeded with a backlog of cards (requests whose policy posts to every one of the platform's
chats), then ``signoff serve`` starts and its outbox delivers them.

Reported per platform: achieved send rate / allowed rate — the least time a perfect sender
needs for the messages delivered (:func:`bench.ratelimits.least_makespan`) over the time
signoff took from the first to the last — and the number of 429 answers. A run is cut off
when it takes much longer than the limits require. Goal: >= 0.9 with zero 429s.

Run alone: .venv/bin/python -m bench.delivery [--quick] [--scale N]
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from approvals.clock import SystemClock
from approvals.model import CreateCommand
from approvals.store import SqlStore
from bench.harness import (
    HOST,
    Row,
    bench_launcher,
    child_environment,
    free_port,
    run_alone,
    running,
    standard_arguments,
    until,
)
from bench.limited_fakes import LimitedBotApi, LimitedDiscord, LimitedSlack, LimitedTeams
from bench.ratelimits import SendLimits, Window, least_makespan
from bot.app import rules_from
from config import load_config
from tests.world import build_test_runtime

BENCHMARK = "4 Delivery efficiency"
GOAL_EFFICIENCY = 0.9
SLACK_TOKEN, SLACK_APP_TOKEN = "xoxb-bench", "xapp-1-bench"
SLACK_SECRET = "bench-signing-secret-0123456789ab"
TELEGRAM_TOKEN = "123456:BENCH-token"
DISCORD_TOKEN = "bench-discord-token"
TEAMS_APP_ID = "5160f00d-7ea5-4c3b-9d2e-0000000000b1"
TEAMS_TENANT = "5160f00d-7ea5-4c3b-9d2e-0000000000b2"
TEAMS_PASSWORD = "bench-teams-secret"
TEAMS_TEAM = "19:benchteam@thread.tacv2"
SECRETS = {
    "SLACK_BOT_TOKEN": SLACK_TOKEN,
    "SLACK_SIGNING_SECRET": SLACK_SECRET,
    "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
    "DISCORD_BOT_TOKEN": DISCORD_TOKEN,
    "TEAMS_APP_PASSWORD": TEAMS_PASSWORD,
}

# The platforms' published limits, at real speed.
SLACK_LIMITS = SendLimits(interval=1.0, overall=Window(300, 60.0))
"""chat.postMessage: about one message a second per channel; a few hundred a minute overall."""
TELEGRAM_LIMITS = SendLimits(interval=1.0, chat_window=Window(20, 60.0), overall=Window(30, 1.0))
"""One message a second per chat, 20 a minute per group, 30 a second for the bot."""
DISCORD_LIMITS = SendLimits(chat_bucket=Window(5, 5.0), overall=Window(50, 1.0))
"""Channel message buckets of 5 per 5 seconds; 50 requests a second for the bot."""
TEAMS_LIMITS = SendLimits(
    chat_windows=(Window(7, 1.0), Window(8, 2.0), Window(60, 30.0), Window(1800, 3600.0)),
    overall=Window(30, 1.0),
)
"""Per bot per conversation: 7 a second, 8 per 2 s, 60 per 30 s, 1,800 an hour; 30 a
second for the app in a tenant."""
AGENTS = [f"agent-{i}" for i in range(10)]
"""The backlog comes from several agents: signoff's flood guard gathers more than 20 cards a
minute from one agent to one destination onto a digest card."""

CONFIG = """\
version: 1
server: {{listen: "{host}:{port}", public_url: "http://{host}:{port}"}}
database: {{url: "sqlite:///{db}"}}
people:
  approver: {{}}
channels:
{channels}
platforms:
{platform}
agents:
{agents}
policies:
  - name: default
    levels: [{{approvers: [approver], notify: [{notify}], timeout: 30m}}]
"""


class LimitedFake(Protocol):
    refusals: int
    delivered: list[tuple[float, str]]

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Scenario:
    """One platform's run: its limits (real speed), its chats and the cards per chat."""

    platform: str
    limits: SendLimits
    chats: tuple[str, ...]
    cards_per_chat: int

    def fake(self, scale: float) -> Any:
        limits = self.limits.scaled(scale)
        if self.platform == "Slack":
            return LimitedSlack(
                limits,
                bot_token=SLACK_TOKEN,
                app_token=SLACK_APP_TOKEN,
                signing_secret=SLACK_SECRET,
            )
        if self.platform == "Telegram":
            fake = LimitedBotApi(limits, TELEGRAM_TOKEN)
            for chat in self.chats:
                fake.add_group(int(chat), f"group {chat}")
            return fake
        if self.platform == "Teams":
            teams = LimitedTeams(
                limits, app_id=TEAMS_APP_ID, app_password=TEAMS_PASSWORD, tenant_id=TEAMS_TENANT
            )
            for chat in self.chats:
                teams.add_channel(TEAMS_TEAM, chat)
            return teams
        return LimitedDiscord(limits, DISCORD_TOKEN)

    def config_sections(self, fake: Any) -> tuple[str, str]:
        """The ``channels`` and ``platforms`` sections for ``fake``."""
        key = self.platform.lower()
        channels = "\n".join(
            f'  chat-{i}: {{{key}: "{chat}"}}'
            if key in ("discord", "teams")
            else f"  chat-{i}: {{{key}: {chat}}}"
            for i, chat in enumerate(self.chats)
        )
        if key == "slack":
            platform = (
                '  slack: {bot_token: "${SLACK_BOT_TOKEN}", signing_secret: '
                f'"${{SLACK_SIGNING_SECRET}}", mode: http, api_url: "{fake.api_url}"}}'
            )
        elif key == "telegram":
            platform = (
                '  telegram: {bot_token: "${TELEGRAM_BOT_TOKEN}", mode: polling, '
                f'api_url: "{fake.base_url}"}}'
            )
        elif key == "teams":
            platform = (
                f'  teams: {{app_id: "{TEAMS_APP_ID}", app_password: "${{TEAMS_APP_PASSWORD}}", '
                f'tenant_id: "{TEAMS_TENANT}", api_url: "{fake.service_url}", '
                f'openid_metadata_url: "{fake.openid_metadata_url}", '
                f'login_url: "{fake.login_endpoint}"}}'
            )
        else:
            platform = (
                '  discord: {bot_token: "${DISCORD_BOT_TOKEN}", '
                f'api_url: "{fake.api_url}", gateway_url: "{fake.gateway_url}"}}'
            )
        return channels, platform

    def launch_options(self, scale: float) -> dict[str, Any]:
        """The same limits for signoff, as adapter constructor arguments."""
        limits = self.limits.scaled(scale)
        if self.platform == "Slack":
            assert limits.interval is not None
            return {"slack": {"send_interval_seconds": limits.interval}}
        if self.platform == "Telegram":
            assert limits.interval is not None
            assert limits.chat_window is not None
            assert limits.overall is not None
            return {
                "telegram": {
                    "send_interval_seconds": limits.interval,
                    "group": _window(limits.chat_window),
                    "overall": _window(limits.overall),
                }
            }
        if self.platform == "Teams":
            return {
                "teams": {
                    "conversation": [_window(window) for window in limits.chat_windows],
                    "overall": _window(limits.overall) if limits.overall else None,
                }
            }
        # Discord announces its buckets in X-RateLimit-* headers (the fake does too), and
        # discord.py keeps to them: signoff adds no pacing of its own, as by default.
        return {"discord": {"send_interval_seconds": 0.0}}


def _window(window: Window) -> dict[str, float]:
    return {"count": window.count, "period_seconds": window.period}


@dataclass(frozen=True)
class Sizes:
    scale: float = 10.0
    chats: int = 4
    cards: tuple[int, int, int, int] = (100, 60, 100, 100)
    """Cards per chat for Slack, Telegram, Discord and Teams (about ten seconds of limits
    each)."""
    patience: float = 2.0
    """A run is cut off after this many times what the limits require (plus 5 s)."""


FULL = Sizes()
QUICK = Sizes(chats=2, cards=(5, 5, 6, 10), patience=1.5)


def scenarios(sizes: Sizes) -> list[Scenario]:
    slack, telegram, discord, teams = sizes.cards
    chats = range(1, sizes.chats + 1)
    return [
        Scenario("Slack", SLACK_LIMITS, tuple(f"C0CARDS{i}" for i in chats), slack),
        Scenario("Telegram", TELEGRAM_LIMITS, tuple(str(-1001000 - i) for i in chats), telegram),
        Scenario("Discord", DISCORD_LIMITS, tuple(str(300100 + i) for i in chats), discord),
        Scenario(
            "Teams", TEAMS_LIMITS, tuple(f"19:benchchat{i}@thread.tacv2" for i in chats), teams
        ),
    ]


def measures(_sizes: Sizes) -> list[str]:
    platforms = ("Slack", "Telegram", "Discord", "Teams")
    return [f"send rate / allowed: {platform}" for platform in platforms]


async def seed_backlog(config_path: Path, cards_per_chat: int) -> None:
    """Requests whose cards go to every chat, created through the service before start."""
    config = load_config(config_path, environ=SECRETS)
    store = SqlStore(config.settings.database.url)
    try:
        await store.migrate()
        service = build_test_runtime(store, SystemClock(), rules_from(config)).service
        for index in range(cards_per_chat):
            agent = AGENTS[index % len(AGENTS)]
            await service.create(
                CreateCommand(
                    agent=agent,
                    action="deploy.web",
                    title=f"Deploy {index}",
                    params={"n": index},  # a request of its own, not the agent's pending twin
                )
            )
    finally:
        await store.close()


async def run_scenario(scenario: Scenario, sizes: Sizes, workdir: Path) -> Row:
    fake = scenario.fake(sizes.scale)
    await fake.start()
    try:
        port = free_port()
        db = workdir / f"{scenario.platform.lower()}.db"
        config = workdir / f"{scenario.platform.lower()}.yaml"
        channels, platform = scenario.config_sections(fake)
        notify = ", ".join(f"chat-{i}" for i in range(len(scenario.chats)))
        config.write_text(
            CONFIG.format(
                host=HOST,
                port=port,
                db=db,
                channels=channels,
                platform=platform,
                notify=notify,
                agents="\n".join(f"  {agent}: {{max_open: 1000000}}" for agent in AGENTS),
            ),
            encoding="utf-8",
        )
        await seed_backlog(config, scenario.cards_per_chat)
        total = scenario.cards_per_chat * len(scenario.chats)
        limits = scenario.limits.scaled(sizes.scale)
        required = least_makespan(limits, dict.fromkeys(scenario.chats, scenario.cards_per_chat))
        server = bench_launcher(
            config,
            json.dumps(scenario.launch_options(sizes.scale)),
            log_path=workdir / f"{scenario.platform.lower()}.log",
            base_url=f"http://{HOST}:{port}",
            env=child_environment(**SECRETS),
        )
        async with running(server):
            await server.wait_ready()
            await until(lambda: fake.delivered, within=60, what="the first card")
            # Cut off a run that takes far longer than the limits require.
            with contextlib.suppress(TimeoutError):
                await until(
                    lambda: len(fake.delivered) >= total,
                    within=required * sizes.patience + 5.0,
                    poll=0.1,
                )
        return _row(scenario, limits, fake, total)
    finally:
        await fake.close()


def _row(scenario: Scenario, limits: SendLimits, fake: LimitedFake, total: int) -> Row:
    delivered = fake.delivered
    measure = f"send rate / allowed: {scenario.platform}"
    if len(delivered) < 2:
        return Row(BENCHMARK, measure, f"{len(delivered)} messages delivered", "", False)
    took = delivered[-1][0] - delivered[0][0]
    sent_per_chat: dict[str, int] = {}
    for _at, chat in delivered:
        sent_per_chat[chat] = sent_per_chat.get(chat, 0) + 1
    least = least_makespan(limits, sent_per_chat)
    efficiency = least / took if took > 0 else 1.0
    gaps = len(delivered) - 1
    figure = (
        f"{efficiency:.2f} ({gaps / took:.1f} of {gaps / least:.1f} messages/s allowed; "
        f"{fake.refusals} answered 429; {len(delivered)} of {total} sent"
    )
    figure += ")" if len(delivered) == total else ", then cut off)"
    met = efficiency >= GOAL_EFFICIENCY and fake.refusals == 0 and len(delivered) == total
    return Row(BENCHMARK, measure, figure, ">= 0.9, no 429", met)


async def run(sizes: Sizes, workdir: Path) -> list[Row]:
    return [await run_scenario(scenario, sizes, workdir) for scenario in scenarios(sizes)]


def main(argv: list[str] | None = None) -> None:
    parser = standard_arguments(__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, help="time runs this much faster (default 10)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.scale:
        sizes = replace(sizes, scale=args.scale)
    run_alone(run, sizes)


if __name__ == "__main__":
    main()
