"""The Discord adapter: posts and edits cards, and turns button clicks into votes for the core.

discord.py's :class:`discord.Client` runs inside our event loop: ``login()`` and then
``connect()`` as a task (never the blocking ``run()``), closed by ``stop()``. The gateway
connection can be switched on and off on its own (``start_inbound``/``stop_inbound``) while
the login, and so sending, stays: with several processes only one holds the gateway. REST
calls go to the configured ``api_url`` and the gateway to ``gateway_url``.

Clicks are handled statelessly. Nothing is registered with discord.py's view store: every
``INTERACTION_CREATE`` reaches :meth:`DiscordAdapter._on_interaction`, which reads the
button's ``custom_id`` (an opaque ``so1:<verb>:<request id>`` reference) itself. So a button
posted before a restart works after it with nothing to re-register, and clicks that are not
ours (malformed references, a message that is not the card posted for that request) are
refused and audited instead of being dropped silently.

A click is answered at once (deferred, or the reason modal), then checked, then voted: it
must carry one of our references and arrive on the very message signoff posted for that
request. The core alone decides whether a vote counts; the card edits that follow go through
the outbox like any other decision. Refusals are ephemeral messages saying why.

Under a policy that needs approvals confirmed, Approve is answered with a modal showing the
risk, the describe line and the params; its ``custom_id`` carries the person's confirmation
token, and its submission is the approval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.references import MODAL_VERBS, Reference, Verb, decode
from adapters.discord.rendering import (
    REASON_INPUT,
    REASON_LIMIT,
    DiscordCard,
    confirm_modal,
    reason_modal,
    render_card,
    render_notice,
)
from adapters.pacing import SendLimit, SendPacer
from approvals.card import ApprovalCard
from approvals.clicks import Click as CoreClick
from approvals.clicks import ClickOutcome, Foreign, ReasonPrompt, click_notice
from approvals.directory import Destination, DestinationKind
from approvals.model import Verdict
from approvals.ports import (
    DeliveryError,
    MessageRef,
    VoteSink,
    parse_retry_after,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

PLATFORM = "discord"
DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg"
DEFAULT_SEND_INTERVAL = timedelta(0)
"""Our own least time between two posts to one channel: none by default. Discord announces
each channel's bucket in ``X-RateLimit-*`` headers and discord.py waits for the bucket's
reset before a post that would exceed it, so a burst goes out at the bucket's pace (five
at once, then the next five after the reset); an even spacing of our own on top would
only slow it."""
OVERALL_LIMIT = SendLimit(50, timedelta(seconds=1))
"""What Discord allows one bot, all requests together. discord.py keeps it by itself; an
``overall_limit`` of our own is for sending slower than that."""
DEFAULT_RETRY_AFTER = timedelta(seconds=1)
"""The wait after a 429 that came without a usable ``Retry-After``."""
MAX_RATELIMIT_WAIT = 30.0
"""Seconds discord.py may wait out a rate limit itself (its smallest allowed value); a
longer ``retry_after`` becomes :class:`DeliveryError` so the outbox waits instead."""
CONNECT_TIMEOUT = 10.0
"""Seconds ``start()`` waits for the gateway's READY; after that it keeps connecting."""
STOP_TIMEOUT = 5.0
"""Seconds ``stop()`` lets clicks in progress finish."""
MODAL_DECISION_BUDGET = 2.0
"""Seconds a "Deny with reason" click may spend checking before it must answer (Discord
allows 3 s): refused clicks are told why; when checking takes longer, the modal opens and
the submission is checked instead."""
HEALTH_TIMEOUT = 5.0
SEEN_INTERACTIONS = 10_000
"""Interaction ids remembered to drop a duplicate delivery (a replay after RESUME)."""
LOGIN_RETRY_MIN = 1.0
LOGIN_RETRY_MAX = 60.0

NO_MENTIONS = discord.AllowedMentions.none()
"""Every send and edit carries this: discord.py's default would let ``@everyone`` ping."""

GENERIC_FAILURE = "Something went wrong and your click was not counted. Please try again."

# Codes of clicks refused before they could become votes (written to the audit log).
FOREIGN_APPLICATION = "foreign_application"
"""Audit code of an interaction meant for another Discord application."""

_TRANSIENT = (aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class Click:
    """A button click or modal submission, as far as signoff cares.

    Attributes:
        user_id: the clicking user's snowflake (the identity the core resolves).
        raw_custom_id: the ``custom_id`` as received (untrusted).
        channel_id: where the message clicked on lives.
        message_id: the message clicked on (for a modal, the message it was opened from).
        submitted: whether this is a modal submission rather than a button click.
    """

    user_id: str
    raw_custom_id: str | None
    channel_id: str | None
    message_id: str | None
    application_id: str | None
    submitted: bool = False

    @property
    def reference(self) -> Reference | None:
        reference = decode(self.raw_custom_id)
        if reference is None:
            return None
        # A modal's reference on a button, or a button's on a modal, is not ours either.
        if (reference.verb in MODAL_VERBS) != self.submitted:
            return None
        return reference

    @property
    def request_id(self) -> str | None:
        reference = self.reference
        return reference.request_id if reference else None


def parse_click(interaction: discord.Interaction[Any]) -> Click:
    """The click in a component or modal-submit interaction."""
    data: Any = interaction.data or {}
    raw = data.get("custom_id") if isinstance(data, dict) else None
    message = interaction.message
    return Click(
        user_id=str(interaction.user.id),
        raw_custom_id=raw if isinstance(raw, str) else None,
        channel_id=str(interaction.channel_id) if interaction.channel_id is not None else None,
        message_id=str(message.id) if message is not None else None,
        application_id=str(interaction.application_id),
        submitted=interaction.type is discord.InteractionType.modal_submit,
    )


def submitted_reason(data: object) -> str | None:
    """The reason typed into the modal, wherever Discord nested the text input."""
    if isinstance(data, dict):
        if data.get("custom_id") == REASON_INPUT and isinstance(data.get("value"), str):
            return str(data["value"])
        children = [data.get("components"), data.get("component")]
        for child in children:
            found = submitted_reason(child)
            if found is not None:
                return found
    elif isinstance(data, list):
        for item in data:
            found = submitted_reason(item)
            if found is not None:
                return found
    return None


def delivery_error(exc: Exception) -> DeliveryError:
    """A REST failure as the outbox understands it: when to retry, or not at all."""
    if isinstance(exc, discord.RateLimited):
        return DeliveryError(
            f"Discord rate limit ({exc.retry_after:.1f} s)",
            retry_after=parse_retry_after(exc.retry_after, default=DEFAULT_RETRY_AFTER),
        )
    if isinstance(exc, discord.HTTPException):
        status = exc.status
        if status == 429:
            # Without a Via header discord.py does not retry a 429 (it may be Cloudflare's).
            return DeliveryError(
                f"Discord rate limit (HTTP 429, code {exc.code})",
                retry_after=_retry_after(exc.response),
            )
        if status >= 500:
            return DeliveryError(f"Discord answered HTTP {status}")
        # 401: the token may be replaced by a config reload; other 4xx cannot succeed later.
        return DeliveryError(
            f"Discord refused: HTTP {status} code {exc.code}: {exc.text[:200]}",
            permanent=status != 401,
        )
    return DeliveryError(f"Discord unreachable: {type(exc).__name__}: {exc}")


def _retry_after(response: Any) -> timedelta:
    headers = getattr(response, "headers", None)
    raw = headers.get("Retry-After") if headers is not None else None
    return parse_retry_after(raw, default=DEFAULT_RETRY_AFTER)


class _GatewayClient(discord.Client):
    """A plain client whose only event handlers hand interactions to the adapter."""

    def __init__(
        self,
        *,
        on_interaction: Callable[[discord.Interaction[Any]], Awaitable[None]],
        on_connect: Callable[[], None],
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._interaction_handler = on_interaction
        self._connect_handler = on_connect

    async def on_connect(self) -> None:
        # READY arrived: interactions flow from here on. (on_ready comes later, after
        # discord.py has waited guild_ready_timeout for the guilds to stream in.)
        self._connect_handler()

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        await self._interaction_handler(interaction)


class DiscordAdapter:
    """Discord for signoff. See the module docstring.

    Attributes:
        platform: ``discord``.
        min_send_interval: least time between two posts to one channel (default none:
            discord.py keeps to the buckets Discord announces).

    ``overall_limit``, when given, holds messages to all channels together to that window
    (at most :data:`OVERALL_LIMIT`, which discord.py keeps anyway).
    """

    platform = PLATFORM

    def __init__(
        self,
        *,
        bot_token: str,
        public_url: str,
        api_url: str = DEFAULT_API_URL,
        gateway_url: str = DEFAULT_GATEWAY_URL,
        min_send_interval: timedelta = DEFAULT_SEND_INTERVAL,
        overall_limit: SendLimit | None = None,
        guild_ready_timeout: float = 2.0,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if not bot_token:
            raise ValueError("Discord needs the bot token")
        self.min_send_interval = min_send_interval
        self._pacer = (
            SendPacer(overall=(overall_limit,), label=lambda channel: f"channel {channel}")
            if overall_limit is not None
            else None
        )
        self._token = bot_token
        self._public_url = public_url
        self._api_url = api_url.rstrip("/")
        gateway = yarl.URL(gateway_url)
        self._gateway_url = gateway.with_path("/") if not gateway.path else gateway
        self._guild_ready_timeout = guild_ready_timeout
        self._connect_timeout = connect_timeout
        self._client: _GatewayClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._logged_in = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inbound_on = asyncio.Event()
        self._sink: VoteSink | None = None
        self._dm_channels: dict[str, str] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._previous_endpoints: tuple[str, yarl.URL] | None = None
        self._seen: OrderedDict[int, None] = OrderedDict()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def inbound_is_singleton(self) -> bool:
        """The gateway: one connection per bot token (signoff does not shard)."""
        return True

    async def start(self, sink: VoteSink, *, inbound: bool = True) -> None:
        """Log in and connect to the gateway; wait (a while) for its READY.

        With ``inbound=False`` only the login (REST) is waited for, and the gateway waits
        for :meth:`start_inbound`.
        """
        self._sink = sink
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._logged_in = asyncio.Event()
        self._inbound_on = asyncio.Event()
        if inbound:
            self._inbound_on.set()
        self._apply_endpoints()
        self._runner = asyncio.create_task(self._run(), name="discord-gateway")
        up = self._connected if inbound else self._logged_in
        ready = asyncio.create_task(up.wait())
        try:
            await asyncio.wait(
                {ready, self._runner},
                timeout=self._connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
        if self._runner.done() and not up.is_set():
            # The runner only ends by itself when Discord refused the token: fail fast, as
            # a dead adapter would otherwise look alive while every delivery fails.
            await self.stop()
            raise RuntimeError("Discord refused the bot token; check DISCORD_BOT_TOKEN")
        if not up.is_set():
            log.warning("Discord is not ready yet; still trying")

    async def start_inbound(self) -> None:
        """Connect the gateway (now, or right after the login) without waiting for READY."""
        self._inbound_on.set()

    async def stop_inbound(self) -> None:
        """Drop the gateway connection at once; the login, and so sending, stays."""
        self._inbound_on.clear()
        gateway = self._gateway
        if gateway is not None and not gateway.done():
            gateway.cancel()
            await asyncio.gather(gateway, return_exceptions=True)
        self._connected.clear()
        client = self._client
        socket = getattr(client, "ws", None) if client is not None else None
        if socket is not None and socket.open:
            # 1000 ends the session: whoever connects next starts afresh.
            await socket.close(code=1000)

    async def stop(self) -> None:
        """Close the gateway connection and let clicks in progress finish."""
        self._stopping.set()
        if self._inflight:
            # Clicks in progress still need the HTTP session for their answers.
            await asyncio.wait(set(self._inflight), timeout=STOP_TIMEOUT)
        client = self._client
        if client is not None:
            await client.close()
        if self._runner is not None:
            done, _pending = await asyncio.wait({self._runner}, timeout=STOP_TIMEOUT)
            if not done:
                self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        for task in list(self._inflight):
            task.cancel()
        self._client = None
        self._sink = None
        self._restore_endpoints()

    async def check_health(self) -> bool:
        """The bot token works over REST and, when this process holds it, the gateway is up."""
        client = self._client
        if client is None or client.is_closed() or not self._logged_in.is_set():
            return False
        if self._inbound_on.is_set():
            socket = getattr(client, "ws", None)
            if not self._connected.is_set() or socket is None or not socket.open:
                return False
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                await client.http.request(Route("GET", "/users/@me"))
        except (discord.DiscordException, *_TRANSIENT):
            return False
        return True

    def _apply_endpoints(self) -> None:
        """Point discord.py at our ``api_url`` and ``gateway_url``.

        discord.py reads both from class attributes, not from the client: ``Route.BASE`` is
        read each time a request is made (interaction callbacks included) and
        ``DiscordWebSocket.DEFAULT_GATEWAY`` on every (re)connect. So they are process-wide
        and must hold for as long as this adapter runs; one Discord adapter per process is
        the rule. They are set just before login and put back by ``stop()``.
        """
        if self._previous_endpoints is None:
            self._previous_endpoints = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE = self._api_url
        DiscordWebSocket.DEFAULT_GATEWAY = self._gateway_url

    def _restore_endpoints(self) -> None:
        if self._previous_endpoints is None:
            return
        base, gateway = self._previous_endpoints
        self._previous_endpoints = None
        # Only if nobody replaced them since (another adapter started after this one).
        if self._api_url == Route.BASE:
            Route.BASE = base
        if self._gateway_url == DiscordWebSocket.DEFAULT_GATEWAY:
            DiscordWebSocket.DEFAULT_GATEWAY = gateway

    def _new_client(self) -> _GatewayClient:
        return _GatewayClient(
            on_interaction=self._on_interaction,
            on_connect=self._connected.set,
            # Interactions arrive without any intent; guilds keeps READY's bookkeeping simple.
            intents=discord.Intents(guilds=True),
            allowed_mentions=NO_MENTIONS,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT,
            guild_ready_timeout=self._guild_ready_timeout,
        )

    async def _run(self) -> None:
        """Log in, and hold the gateway while inbound is on, until ``stop()``; start over
        after fatal errors."""
        delay = LOGIN_RETRY_MIN
        while not self._stopping.is_set():
            client = self._new_client()
            self._client = client
            try:
                await client.login(self._token)
            except discord.LoginFailure:
                log.error("Discord refused the bot token; not connecting")
                await client.close()
                return
            except (discord.HTTPException, *_TRANSIENT) as exc:
                log.warning("Discord login failed (%s); retrying in %.0f s", exc, delay)
                await client.close()
                await self._pause(delay)
                delay = min(delay * 2, LOGIN_RETRY_MAX)
                continue
            self._logged_in.set()
            try:
                await self._hold_gateway(client)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("Discord gateway connection ended; starting over in %.0f s", delay)
            if self._stopping.is_set():
                return
            self._logged_in.clear()
            await client.close()
            await self._pause(delay)
            delay = min(delay * 2, LOGIN_RETRY_MAX)

    async def _hold_gateway(self, client: _GatewayClient) -> None:
        """Connect the gateway each time inbound is switched on; ``stop_inbound`` cancels it.

        Returns when the client is closed (``stop()``); raises when the connection failed.
        """
        while not self._stopping.is_set():
            switched_on = asyncio.create_task(self._inbound_on.wait())
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({switched_on, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (switched_on, stopping):
                waiter.cancel()
            await asyncio.gather(switched_on, stopping, return_exceptions=True)
            if self._stopping.is_set():
                return
            # reconnect=True: discord.py resumes the session after drops by itself.
            self._gateway = asyncio.create_task(
                client.connect(reconnect=True), name="discord-gateway-connection"
            )
            await asyncio.wait({self._gateway})
            if not self._gateway.cancelled():
                self._gateway.result()  # raises when the connection failed for good
                return  # connect() returns once the client is closed
            if client.is_closed():
                return

    async def _pause(self, seconds: float) -> None:
        """Wait before trying again, but no longer than until ``stop()``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _rest(self) -> _GatewayClient:
        """The logged-in client for REST calls."""
        client = self._client
        if client is None or client.user is None or client.is_closed():
            raise DeliveryError("not logged in to Discord yet")
        return client

    # -- outbound ---------------------------------------------------------------------------

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        client = self._rest()
        rendered = render_card(card, public_url=self._public_url)
        if destination.kind is DestinationKind.USER:
            channel_id = await self._dm_channel(client, destination.target)
        else:
            channel_id = _snowflake(destination.target)
        channel = client.get_partial_messageable(channel_id)
        view = self._view(rendered)
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        message = await self._paced(
            channel_id,
            lambda: channel.send(
                content=rendered.content,
                embed=rendered.embed,
                allowed_mentions=NO_MENTIONS,
                **extra,
            ),
        )
        return MessageRef(
            PLATFORM, {"channel_id": str(message.channel.id), "message_id": str(message.id)}
        )

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        client = self._rest()
        channel_id, message_id = _where(ref)
        rendered = render_card(card, public_url=self._public_url)
        message = client.get_partial_messageable(channel_id).get_partial_message(message_id)
        await self._paced(
            channel_id,
            lambda: message.edit(
                content=rendered.content,
                embed=rendered.embed,
                view=self._view(rendered),  # None removes the buttons
                allowed_mentions=NO_MENTIONS,
            ),
        )

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        client = self._rest()
        channel_id, message_id = _where(ref)
        reference = discord.MessageReference(
            message_id=message_id, channel_id=channel_id, fail_if_not_exists=False
        )
        await self._paced(
            channel_id,
            lambda: client.get_partial_messageable(channel_id).send(
                content=render_notice(text), reference=reference, allowed_mentions=NO_MENTIONS
            ),
        )

    @staticmethod
    def _view(rendered: DiscordCard) -> discord.ui.View | None:
        """The buttons as a view that discord.py does not keep: clicks come to us directly."""
        if not rendered.buttons:
            return None
        view = discord.ui.View(timeout=None)
        for button in rendered.buttons:
            item: discord.ui.Button[discord.ui.View]
            if button.url is not None:
                item = discord.ui.Button(label=button.label, style=button.style, url=button.url)
            else:
                item = discord.ui.Button(
                    label=button.label, style=button.style, custom_id=button.custom_id
                )
            view.add_item(item)
        view.stop()  # a stopped view is rendered but never stored or dispatched
        return view

    async def _dm_channel(self, client: discord.Client, user: str) -> int:
        channel = self._dm_channels.get(user)
        if channel is None:
            dm = await self._call(client.create_dm(discord.Object(id=_snowflake(user))))
            channel = str(dm.id)
            self._dm_channels[user] = channel
        return int(channel)

    async def _paced(self, channel_id: int, request: Callable[[], Awaitable[T]]) -> T:
        """Make one message request to ``channel_id``, once the ``overall_limit`` window
        has room for it (a :class:`~adapters.pacing.PacingDelay` when it will not soon)."""
        if self._pacer is None:
            return await self._call(request())
        async with self._pacer.slot(channel_id):
            return await self._call(request())

    @staticmethod
    async def _call(request: Awaitable[T]) -> T:
        try:
            return await request
        except (discord.HTTPException, discord.RateLimited, *_TRANSIENT) as exc:
            raise delivery_error(exc) from exc

    # -- inbound ----------------------------------------------------------------------------

    async def _on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """The one inbound entry and error hook: log with context, tell the person briefly."""
        if interaction.type not in (
            discord.InteractionType.component,
            discord.InteractionType.modal_submit,
        ):
            return
        if self._already_seen(interaction.id):
            log.info("Discord interaction %s delivered twice; ignoring the copy", interaction.id)
            return
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        click = parse_click(interaction)
        try:
            await self._take(interaction, click)
        except Exception:
            log.exception(
                "Discord click failed (user %s, custom_id %r, message %s/%s)",
                click.user_id,
                click.raw_custom_id,
                click.channel_id,
                click.message_id,
                extra={"request_id": click.request_id},
            )
            await self._tell(interaction, GENERIC_FAILURE)
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _already_seen(self, interaction_id: int) -> bool:
        if interaction_id in self._seen:
            return True
        self._seen[interaction_id] = None
        if len(self._seen) > SEEN_INTERACTIONS:
            self._seen.popitem(last=False)
        return False

    async def _take(self, interaction: discord.Interaction[Any], click: Click) -> None:
        reference = click.reference
        if reference is not None and reference.verb is Verb.DENY_WITH_REASON:
            await self._take_reason_click(interaction, click)
            return
        approving = reference is not None and reference.verb is Verb.APPROVE
        if approving and await self._opened_confirmation(interaction, click):
            return
        # Answer first (Discord allows 3 s); everything else is said in followups.
        try:
            await interaction.response.defer()
        except discord.HTTPException as exc:
            # Already acknowledged (a duplicate) or too late (the person was told the
            # interaction failed and may click again): either way, do not count it.
            log.warning("could not acknowledge Discord interaction %s: %s", interaction.id, exc)
            return
        token = None
        if reference is None or reference.verb is Verb.APPROVE:
            verdict, reason = Verdict.APPROVE, None  # a malformed reference is refused anyway
        elif reference.verb is Verb.CONFIRM_SUBMITTED:
            verdict, reason, token = Verdict.APPROVE, None, reference.token
        elif reference.verb is Verb.DENY:
            verdict, reason = Verdict.DENY, None
        else:
            verdict, reason = Verdict.DENY, submitted_reason(interaction.data)
        sink = self._sink
        if sink is None:
            await self._tell(interaction, "signoff is starting or stopping; please try again.")
            return
        grant_seconds = reference.grant_seconds if reference is not None else None
        grant_for = None if grant_seconds is None else timedelta(seconds=grant_seconds)
        core_click = replace(
            self._core_click(click, verdict, reason, grant_for=grant_for), confirm_token=token
        )
        outcome = await sink.handle_click(core_click)
        await self._tell_outcome(interaction, outcome)

    async def _opened_confirmation(
        self, interaction: discord.Interaction[Any], click: Click
    ) -> bool:
        """Approve under a policy that needs confirming: answer with the confirmation modal
        (risk, describe line, params), whose submission is the approval. ``False`` when
        there is none to show (the click is then a vote, judged as any other)."""
        sink = self._sink
        if sink is None:
            return False
        try:
            # The modal must open within Discord's 3 s; if the core is slower, the click
            # goes on as a plain approval, which the core refuses as unconfirmed.
            async with asyncio.timeout(MODAL_DECISION_BUDGET):
                prompt = await sink.confirm_prompt(self._core_click(click, Verdict.APPROVE, None))
        except TimeoutError:
            return False
        if prompt is None:
            return False
        try:
            spec = confirm_modal(prompt)
        except ValueError:
            await interaction.response.send_message(
                render_notice("Approve this request in the signoff inbox: it needs confirming."),
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return True
        modal = discord.ui.Modal(title=spec.title, custom_id=spec.custom_id, timeout=None)
        modal.add_item(discord.ui.TextDisplay(spec.text))
        modal.stop()  # its submission comes to _on_interaction like any click
        await interaction.response.send_modal(modal)
        return True

    async def _take_reason_click(self, interaction: discord.Interaction[Any], click: Click) -> None:
        """Deny with a reason: open the modal, unless the click would be refused anyway."""
        assert click.request_id is not None
        sink = self._sink
        prompt: ReasonPrompt | ClickOutcome | None = None
        if sink is not None:
            try:
                # The modal must open within Discord's 3 s; if the core is slower, open
                # it anyway: the submission is judged like any click.
                async with asyncio.timeout(MODAL_DECISION_BUDGET):
                    prompt = await sink.reason_prompt(self._core_click(click, Verdict.DENY, None))
            except TimeoutError:
                prompt = None
        if prompt is not None and not isinstance(prompt, ReasonPrompt):
            await self._tell_outcome(interaction, prompt)
            return
        require_reason = prompt.require_reason if prompt is not None else True
        spec = reason_modal(click.request_id, require_reason=require_reason)
        modal = discord.ui.Modal(title=spec.title, custom_id=spec.custom_id, timeout=None)
        modal.add_item(
            discord.ui.Label(
                text=spec.label,
                description=spec.description,
                component=discord.ui.TextInput(
                    custom_id=REASON_INPUT,
                    style=discord.TextStyle.paragraph,
                    required=spec.required,
                    min_length=1 if spec.required else None,
                    max_length=REASON_LIMIT,
                ),
            )
        )
        modal.stop()  # its submission comes to _on_interaction like any click
        await interaction.response.send_modal(modal)

    def _core_click(
        self,
        click: Click,
        verdict: Verdict,
        reason: str | None,
        *,
        grant_for: timedelta | None = None,
    ) -> CoreClick:
        """The click as the core takes it: the application check is Discord's own."""
        client = self._client
        ours = str(client.application_id) if client and client.application_id else None
        foreign = None
        if ours is not None and click.application_id != ours:
            foreign = Foreign(
                FOREIGN_APPLICATION,
                f"interaction for application {click.application_id!r}, not {ours!r}",
                "this button does not belong to signoff",
            )
        message = None
        if click.channel_id is not None and click.message_id is not None:
            message = {"channel_id": click.channel_id, "message_id": click.message_id}
        return CoreClick(
            platform=PLATFORM,
            identity=click.user_id,
            request_id=click.request_id,
            raw_reference=click.raw_custom_id,
            message=message,
            verdict=verdict,
            reason=reason,
            foreign=foreign,
            grant_for=grant_for,
        )

    async def _tell_outcome(
        self, interaction: discord.Interaction[Any], outcome: ClickOutcome
    ) -> None:
        notice = click_notice(outcome)
        if notice is not None:
            await self._tell(interaction, notice)

    async def _tell(self, interaction: discord.Interaction[Any], text: str) -> None:
        """An ephemeral message to the person who clicked; failures are only logged."""
        content = render_notice(text)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(
                    content, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
            else:
                await interaction.response.send_message(
                    content, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
        except (discord.HTTPException, discord.RateLimited, *_TRANSIENT) as exc:
            log.warning("could not tell Discord user %s: %s", interaction.user.id, exc)


def _snowflake(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number <= 0:
        raise DeliveryError(f"not a Discord id: {value!r}", permanent=True)
    return number


def _where(ref: MessageRef) -> tuple[int, int]:
    channel, message = ref.data.get("channel_id"), ref.data.get("message_id")
    if not isinstance(channel, str) or not isinstance(message, str):
        raise DeliveryError(f"not a Discord message reference: {ref.data!r}", permanent=True)
    return _snowflake(channel), _snowflake(message)
