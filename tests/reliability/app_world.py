"""The whole signoff application in this process, wired to the fake chat platforms.

:func:`app_world` builds the runtime from a config file's text exactly as ``signoff serve``
does (``build_runtime`` + ``build_http_app``), with any of the three fake platforms from the
adapter suites: the real slack-bolt answers signed posts to the app's own ``/slack/events``,
the real python-telegram-bot long-polls the fake Bot API (or takes webhook posts), and the
real discord.py holds the fake's gateway. Agents call the API and people use the web inbox
through an httpx client on the ASGI app.

The directory has twenty approvers (``p01`` ... ``p20``), each with an identity on all three
platforms, plus ``outsider`` (known, never an approver). Microsoft Teams is optional and
separate: given a fake Teams (``app_world(..., teams=FakeTeams())``), everyone also has an
Entra object id and cards go to one Teams channel too. Email is optional the same way:
given a started fake SMTP relay (``app_world(..., email=FakeSmtpRelay(...))``), everyone
also has an address (``p01@example.test``), ``platforms.email`` points at the relay, and
the notify lists also name ``dm``, so each approver is mailed a card with Approve / Deny
links of their own (and is messaged directly on any chat platform of the world too).
Policies: ``db.*`` needs a quorum of three, everything else one approval; every card goes
to one channel on each configured platform and to the web inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.telegram import TelegramAdapter
from adapters.telegram.pacing import SendLimit, SendPacer
from adapters.web.inbox import SESSION_COOKIE
from approvals.clock import Clock, SystemClock
from approvals.model import ApprovalRequest
from approvals.store import SqlStore
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.limits import RateLimit
from bot.runtime import Runtime
from config import load_config_text
from tests.fakes.discord import FakeDiscord
from tests.fakes.discord import Message as DiscordMessage
from tests.fakes.slack import FakeSlack
from tests.fakes.slack import Message as SlackMessage
from tests.fakes.smtp import PASSWORD as SMTP_PASSWORD
from tests.fakes.smtp import USERNAME as SMTP_USERNAME
from tests.fakes.smtp import FakeSmtpRelay
from tests.fakes.teams import FakeTeams, card_text
from tests.fakes.teams import Message as TeamsMessage
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram import FakeBotApi, FakeMessage
from tests.reliability.invariants import InvariantReport, check_invariants, rendered_cards
from tests.waiting import wait_for

SLACK_TOKEN = "xoxb-signoff-reliability"
SLACK_APP_TOKEN = "xapp-1-signoff-reliability"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DISCORD_TOKEN = "discord-bot-token-reliability"
TELEGRAM_SECRET = "reliability-secret_token"
SLACK_CHANNEL = "C0OPS"
TELEGRAM_GROUP = -1001234
DISCORD_CHANNEL = "300001"
TEAMS_TEAM = "19:0e0000000000000000000000000000aa@thread.tacv2"
TEAMS_CHANNEL = "19:0e0000000000000000000000000000c1@thread.tacv2"
MAIL_DOMAIN = "example.test"
MAIL_SENDER = f"signoff@{MAIL_DOMAIN}"
MAIL_RATE = 6000
"""Messages a minute through the relay: the most the config allows, so a scenario's mail
goes out at once."""
CHANNEL_KEYS = {
    "slack": f"slack:channel:{SLACK_CHANNEL}",
    "telegram": f"telegram:channel:{TELEGRAM_GROUP}",
    "discord": f"discord:channel:{DISCORD_CHANNEL}",
    "teams": f"teams:channel:{TEAMS_CHANNEL}",
}
AGENT = "deploy-bot"
OTHER_AGENT = "other-bot"
TEST_BASE_URL = "http://127.0.0.1"
UNLIMITED = RateLimit(rate=1_000_000, burst=1_000_000)
NO_LIMIT = SendLimit(1_000_000, timedelta(seconds=1))


@dataclass(frozen=True)
class Approver:
    """A person of the test directory and their identity on each platform."""

    name: str
    slack: str
    telegram: int
    discord: str
    teams: str = ""
    """Entra object id (used when the world has Teams)."""
    email: str = ""
    """Email address (used when the world has email)."""

    def identity(self, platform: str) -> str:
        return {
            "slack": self.slack,
            "telegram": str(self.telegram),
            "discord": self.discord,
            "teams": self.teams,
            "email": self.email,
        }[platform]


def _person(number: int, name: str | None = None) -> Approver:
    name = name or f"p{number:02d}"
    return Approver(
        name=name,
        slack=f"U0P{number:04d}",
        telegram=110_000 + number,
        discord=str(210_000_000_000_000_000 + number),
        teams=f"0e000000-0000-4000-8000-{number:012d}",
        email=f"{name}@{MAIL_DOMAIN}",
    )


APPROVERS = tuple(_person(n) for n in range(1, 21))
OUTSIDER = _person(99, "outsider")
STRANGER = _person(98, "stranger")
"""Not in the directory at all: identities nobody configured."""


def _config_text(
    db: Path,
    *,
    slack: FakeSlack | None,
    telegram: FakeBotApi | None,
    telegram_mode: str,
    discord: FakeDiscord | None,
    max_open: int,
    slack_mode: str = "http",
    first_policies: tuple[str, ...] = (),
    teams: FakeTeams | None = None,
    email: FakeSmtpRelay | None = None,
) -> str:
    lines = ["version: 1", f'database: {{url: "sqlite:///{db}"}}', "people:"]
    for person in (*APPROVERS, OUTSIDER):
        ids = []
        if slack is not None:
            ids.append(f"slack: {person.slack}")
        if telegram is not None:
            ids.append(f"telegram: {person.telegram}")
        if discord is not None:
            ids.append(f'discord: "{person.discord}"')
        if teams is not None:
            ids.append(f'teams: "{person.teams}"')
        if email is not None:
            ids.append(f"email: {person.email}")
        lines.append(f"  {person.name}: {{{', '.join(ids)}}}")
    lines.append("groups:")
    lines.append(f"  approvers: [{', '.join(p.name for p in APPROVERS)}]")
    lines.append("channels:")
    notify = []
    if slack is not None:
        lines.append(f"  ops-slack: {{slack: {SLACK_CHANNEL}}}")
        notify.append("ops-slack")
    if telegram is not None:
        lines.append(f"  ops-telegram: {{telegram: {TELEGRAM_GROUP}}}")
        notify.append("ops-telegram")
    if discord is not None:
        lines.append(f'  ops-discord: {{discord: "{DISCORD_CHANNEL}"}}')
        notify.append("ops-discord")
    if teams is not None:
        lines.append(f'  ops-teams: {{teams: "{TEAMS_CHANNEL}"}}')
        notify.append("ops-teams")
    if not notify:
        lines[-1] = "channels: {}"
    if email is not None:
        notify.append("dm")
    notify.append("web")
    lines.append("platforms:")
    if slack is not None:
        lines += [
            "  slack:",
            '    bot_token: "${SLACK_BOT_TOKEN}"',
            f"    mode: {slack_mode}",
            f'    api_url: "{slack.api_url}"',
        ]
        if slack_mode == "http":
            lines.append('    signing_secret: "${SLACK_SIGNING_SECRET}"')
        else:
            lines.append('    app_token: "${SLACK_APP_TOKEN}"')
    if telegram is not None:
        lines += [
            "  telegram:",
            '    bot_token: "${TELEGRAM_BOT_TOKEN}"',
            f"    mode: {telegram_mode}",
            f'    api_url: "{telegram.base_url}"',
        ]
        if telegram_mode == "webhook":
            lines.append('    webhook_secret: "${TELEGRAM_WEBHOOK_SECRET}"')
    if discord is not None:
        lines += [
            "  discord:",
            '    bot_token: "${DISCORD_BOT_TOKEN}"',
            f'    api_url: "{discord.api_url}"',
            f'    gateway_url: "{discord.gateway_url}"',
        ]
    if teams is not None:
        lines += _teams_platform(teams)
    if email is not None:
        lines += _email_platform(email)
    lines.append("  web: {enabled: true}")
    where = ", ".join(notify)
    lines += [
        "agents:",
        f'  {AGENT}: {{allow: ["*"], max_open: {max_open}}}',
        f'  {OTHER_AGENT}: {{allow: ["*"]}}',
        "policies:",
        *(f"  {line}" for line in first_policies),
        # Rated critical, so every approval needs its confirmation (the confirm corpus).
        "  - name: critical",
        '    match: {action: "wire.*"}',
        "    risk: critical",
        '    describe: "Wire {params.amount} EUR to {params.iban}"',
        f"    levels: [{{approvers: [approvers], notify: [{where}], timeout: 30m}}]",
        "  - name: quorum",
        '    match: {action: "db.*"}',
        "    quorum: 3",
        f"    levels: [{{approvers: [approvers], notify: [{where}], timeout: 30m}}]",
        "  - name: default",
        f"    levels: [{{approvers: [approvers], notify: [{where}], timeout: 30m}}]",
    ]
    return "\n".join(lines) + "\n"


def _teams_platform(teams: FakeTeams) -> list[str]:
    """``platforms.teams`` for the fake Teams (its app, tenant and endpoints)."""
    return [
        "  teams:",
        f'    app_id: "{teams.app_id}"',
        '    app_password: "${TEAMS_APP_PASSWORD}"',
        f'    tenant_id: "{teams.tenant_id}"',
        f'    api_url: "{teams.service_url}"',
        f'    openid_metadata_url: "{teams.openid_metadata_url}"',
        f'    token_issuer: "{teams.issuer}"',
        f'    login_url: "{teams.login_endpoint}"',
    ]


def _email_platform(relay: FakeSmtpRelay) -> list[str]:
    """``platforms.email`` for the fake relay (its TLS mode, port, AUTH and certificate)."""
    lines = [
        "  email:",
        '    host: "127.0.0.1"',
        f"    tls: {relay.tls}",
        f"    port: {relay.port}",
        f'    from: "{MAIL_SENDER}"',
        f"    rate: {MAIL_RATE}",
    ]
    if relay.auth:
        lines += [f'    username: "{SMTP_USERNAME}"', '    password: "${SMTP_PASSWORD}"']
    if relay.ca_file is not None:
        lines.append(f'    ca_file: "{relay.ca_file}"')
    return lines


@dataclass
class AppWorld:
    """A started application and handles on everything a scenario touches."""

    runtime: Runtime
    app: Any
    """The ASGI application (``build_http_app``)."""
    client: httpx.AsyncClient
    key: str
    other_key: str
    clock: Clock
    sweep_interval: timedelta
    slack: FakeSlack | None = None
    telegram: FakeBotApi | None = None
    discord: FakeDiscord | None = None
    teams: FakeTeams | None = None
    email: FakeSmtpRelay | None = None
    accepted: list[str] = field(default_factory=list)
    """Ids of the requests the API answered 2xx for (invariant 1)."""
    creates: int = 0
    """Creates posted so far: the number a create without params sends as its ``n``."""
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def store(self) -> SqlStore:
        return self.runtime.store

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def create(self, *, key: str | None = None, **body: Any) -> httpx.Response:
        """POST /v1/approvals; a 2xx answer's id is remembered in :attr:`accepted`.

        Without ``params`` the body asks with ``{"n": <this create's number>}``, so each
        create is a request of its own: the server answers an agent that asks again for what
        it has pending with that pending request. A scenario that means the same payload
        twice passes the same ``params``."""
        self.creates += 1
        payload = {"action": "deploy.web", "title": "Deploy web", "params": {"n": self.creates}}
        payload |= body
        response = await self.client.post("/v1/approvals", json=payload, headers=self.auth(key))
        if response.is_success:
            self.accepted.append(response.json()["id"])
        return response

    async def created(self, **body: Any) -> str:
        """Create a request (must succeed) and return its id."""
        response = await self.create(**body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def get(self, request_id: str) -> ApprovalRequest:
        request = await self.runtime.service.get(request_id)
        assert request is not None
        return request

    async def card_ref(self, request_id: str, platform: str) -> dict[str, Any]:
        """The stored message reference of the request's card on ``platform``."""

        async def posted() -> dict[str, Any] | None:
            async with self.store.read() as reader:
                deliveries = await reader.deliveries(request_id)
            for delivery in deliveries:
                if delivery.destination == CHANNEL_KEYS[platform] and delivery.ref:
                    return delivery.ref
            return None

        return await wait_for(posted, within=30)

    async def slack_card(self, request_id: str) -> SlackMessage:
        assert self.slack is not None
        ref = await self.card_ref(request_id, "slack")
        return self.slack.messages[(ref["channel"], ref["ts"])]

    async def telegram_card(self, request_id: str) -> FakeMessage:
        assert self.telegram is not None
        ref = await self.card_ref(request_id, "telegram")
        return self.telegram.messages[(int(ref["chat_id"]), int(ref["message_id"]))]

    async def discord_card(self, request_id: str) -> DiscordMessage:
        assert self.discord is not None
        ref = await self.card_ref(request_id, "discord")
        return self.discord.messages[(str(ref["channel_id"]), str(ref["message_id"]))]

    async def teams_card(self, request_id: str) -> TeamsMessage:
        assert self.teams is not None
        ref = await self.card_ref(request_id, "teams")
        return self.teams.message(str(ref["conversation_id"]), str(ref["activity_id"]))

    def mail_thread(self, request_id: str, address: str) -> list[EmailMessage]:
        """The messages about the request that reached ``address`` at the relay, oldest
        first (every Message-ID of a request's thread starts with its id)."""
        assert self.email is not None
        return [
            message
            for message in self.email.to(address)
            if str(message["Message-ID"]).strip().startswith(f"<{request_id}.")
        ]

    async def mail(self, request_id: str, address: str, *, count: int = 1) -> list[EmailMessage]:
        """The request's thread at ``address`` once it holds at least ``count`` messages."""

        async def arrived() -> list[EmailMessage] | None:
            thread = self.mail_thread(request_id, address)
            return thread if len(thread) >= count else None

        return await wait_for(arrived, within=30)

    async def signed_in(self, person: str) -> httpx.AsyncClient:
        """A web inbox client signed in as ``person`` through a real sign-in link."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=TEST_BASE_URL
        )
        self._clients.append(client)
        token = await self.runtime.access.create_login_token(person)
        response = await client.post("/login", data={"token": token})
        assert response.status_code == 303, response.text
        assert client.cookies.get(SESSION_COOKIE)
        return client

    async def cards(self) -> dict[str, dict[str, str]]:
        """Every posted card as the fakes hold it now (for invariant 6)."""
        return await rendered_cards(self.store, self._card_text)

    def _card_text(self, destination: str, ref: dict[str, Any]) -> str | None:
        platform = destination.split(":", 1)[0]
        if platform == "slack" and self.slack is not None:
            message = self.slack.messages.get((ref["channel"], ref["ts"]))
            return None if message is None else message.all_text
        if platform == "telegram" and self.telegram is not None:
            found = self.telegram.messages.get((int(ref["chat_id"]), int(ref["message_id"])))
            return None if found is None else found.text
        if platform == "discord" and self.discord is not None:
            posted = self.discord.messages.get((str(ref["channel_id"]), str(ref["message_id"])))
            return None if posted is None else posted.all_text
        if platform == "teams" and self.teams is not None:
            key = (str(ref["conversation_id"]), str(ref["activity_id"]))
            shown = self.teams.messages.get(key)
            return None if shown is None else card_text(shown)
        if platform == "email" and self.email is not None:
            # A mail never changes: what the card shows now is the newest message of its
            # thread (the first message, or a follow-up naming it in In-Reply-To).
            first = str(ref["message_id"])
            thread = [
                message
                for message in self.email.to(str(ref["to"]))
                if first in (str(message["Message-ID"]), str(message["In-Reply-To"]))
            ]
            return None if not thread else _mail_text(thread[-1])
        return None

    async def outbox_idle(self) -> bool:
        """Whether every outbox row was delivered (or dead-lettered)."""
        async with self.store.read() as reader:
            return (await reader.outbox_counts()).get("pending", 0) == 0

    async def check(self, **options: Any) -> InvariantReport:
        """Let the outbox finish, then run the invariant checker with the cards as the fakes
        show them; ``options`` go to :func:`check_invariants`."""
        await wait_for(self.outbox_idle, within=60, poll=0.05)
        return await check_invariants(
            self.store,
            now=self.clock.now(),
            sweep_interval=self.sweep_interval,
            accepted=self.accepted,
            cards=await self.cards(),
            **options,
        )

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
        await self.client.aclose()
        await self.runtime.stop()


def _mail_text(message: EmailMessage) -> str:
    """A message's plain-text part, with the line ends a reader sees."""
    part = message.get_body(preferencelist=("plain",))
    content = "" if part is None else part.get_content()
    return str(content).replace("\r\n", "\n")


PATIENT_TELEGRAM_ACK = timedelta(seconds=10)


def unpace(runtime: Runtime) -> None:
    """Lift the chat platforms' send pacing: a scenario's cards go out at once."""
    for adapter in runtime.adapters.values():
        adapter.min_send_interval = timedelta(0)
        if isinstance(adapter, TelegramAdapter):
            # The Telegram pacer holds the per-chat, per-group and overall limits.
            adapter._pacer = SendPacer(per_chat=timedelta(0), group=NO_LIMIT, overall=NO_LIMIT)


@contextlib.contextmanager
def _discord_endpoints() -> Iterator[None]:
    """discord.py keeps its REST base and gateway URL process-wide: put them back after."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@contextlib.asynccontextmanager
async def app_world(
    tmp_path: Path,
    *,
    slack: FakeSlack | None = None,
    slack_mode: str = "http",
    telegram: FakeBotApi | None = None,
    telegram_mode: str = "polling",
    discord: FakeDiscord | None = None,
    clock: Clock | None = None,
    max_open: int = 1000,
    per_agent: RateLimit = UNLIMITED,
    overall: RateLimit = UNLIMITED,
    sweep_interval: float = 60.0,
    paced: bool = False,
    telegram_ack_budget: timedelta | None = PATIENT_TELEGRAM_ACK,
    first_policies: tuple[str, ...] = (),
    teams: FakeTeams | None = None,
    email: FakeSmtpRelay | None = None,
) -> AsyncIterator[AppWorld]:
    """The started application (see the module docstring); stopped on exit.

    ``paced=False`` lifts the chat platforms' per-channel pacing so a scenario's cards go
    out at once; rate-limit scenarios pace explicitly. ``telegram_ack_budget`` is how long
    Telegram clicks wait for their vote before answering "Received" (the outcome then
    follows as a reply): scenarios that read the toast wait long enough for the outcome to be
    in it even on a busy machine; ``None`` keeps the product's own quick budget (L6).
    ``first_policies`` are YAML lines of policies placed before the standard two.
    ``teams`` (a started fake Teams, optional) adds Microsoft Teams with one channel.
    ``email`` (a started fake SMTP relay, optional) adds email: each approver is mailed.
    """
    text = _config_text(
        tmp_path / "signoff.db",
        slack=slack,
        telegram=telegram,
        telegram_mode=telegram_mode,
        discord=discord,
        max_open=max_open,
        slack_mode=slack_mode,
        first_policies=first_policies,
        teams=teams,
        email=email,
    )
    environ = {
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_APP_TOKEN": SLACK_APP_TOKEN,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "DISCORD_BOT_TOKEN": DISCORD_TOKEN,
    }
    if teams is not None:
        environ["TEAMS_APP_PASSWORD"] = teams.app_password
    if email is not None:
        environ["SMTP_PASSWORD"] = SMTP_PASSWORD
    config = load_config_text(text, "signoff.yaml", environ=environ)
    clock = clock or SystemClock()
    options = AppOptions(
        sweep_interval=sweep_interval,
        clock=clock,
        per_agent_limit=per_agent,
        overall_limit=overall,
    )
    if telegram is not None:
        for person in (*APPROVERS, OUTSIDER, STRANGER):
            telegram.add_user(person.telegram, person.name)
        telegram.add_group(TELEGRAM_GROUP, "ops")
    if teams is not None:
        teams.add_channel(TEAMS_TEAM, TEAMS_CHANNEL)
    with _discord_endpoints():
        runtime = build_runtime(config, options)
        if not paced:
            unpace(runtime)
        if telegram_ack_budget is not None:
            for adapter in runtime.adapters.values():
                if isinstance(adapter, TelegramAdapter):
                    adapter._ack_budget = telegram_ack_budget.total_seconds()
        app = build_http_app(runtime)
        await runtime.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=TEST_BASE_URL)
        if slack is not None:
            slack.mode = slack_mode
            slack.events = client
            if slack_mode == "socket":
                fake_slack = slack

                async def connected() -> bool:
                    return fake_slack.connected >= 1

                await wait_for(connected, within=30)
        world = AppWorld(
            runtime=runtime,
            app=app,
            client=client,
            key=await runtime.access.create_agent_key(AGENT),
            other_key=await runtime.access.create_agent_key(OTHER_AGENT),
            clock=clock,
            sweep_interval=timedelta(seconds=sweep_interval),
            slack=slack,
            telegram=telegram,
            discord=discord,
            teams=teams,
            email=email,
        )
        try:
            yield world
        finally:
            if slack is not None:
                slack.events = None
            await world.close()


@contextlib.asynccontextmanager
async def fake_platforms(
    *, slack: bool = True, telegram: bool = True, discord: bool = True
) -> AsyncIterator[tuple[FakeSlack | None, FakeBotApi | None, FakeDiscord | None]]:
    """The fake servers, started on 127.0.0.1 and closed on exit."""
    fakes: list[Any] = []
    slack_fake = telegram_fake = discord_fake = None
    if slack:
        slack_fake = FakeSlack(
            bot_token=SLACK_TOKEN, app_token=SLACK_APP_TOKEN, signing_secret=SLACK_SECRET
        )
        fakes.append(slack_fake)
    if telegram:
        telegram_fake = FakeBotApi()
        fakes.append(telegram_fake)
    if discord:
        discord_fake = FakeDiscord(bot_token=DISCORD_TOKEN)
        fakes.append(discord_fake)
    for fake in fakes:
        await fake.start()
    try:
        yield slack_fake, telegram_fake, discord_fake
    finally:
        for fake in reversed(fakes):
            await fake.close()
