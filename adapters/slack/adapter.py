"""The Slack adapter: posts and edits cards, and turns button clicks into votes for the core.

slack-bolt's ``AsyncApp`` runs inside our event loop: in ``http`` mode its Starlette handler
serves ``POST /slack/events`` on our FastAPI app; in ``socket`` mode a Socket Mode
connection is opened with ``connect_async()`` (never the blocking ``start()``), and can be
opened and closed on its own (``start_inbound``/``stop_inbound``) so that only one of
several processes holds it. Every Web API call goes to the configured ``api_url``.

A click is acknowledged at once, then checked before it becomes a vote: it must come from
our workspace, carry one of our button values, and arrive on the very message signoff
posted for that request. Anything else is refused, audited and answered ephemerally. The
core alone decides whether a vote counts; the card edits that follow go through the
outbox like any other decision.

Under a policy that needs approvals confirmed, Approve opens a modal (``views.open`` with
the click's trigger id) showing the risk, the describe line and the params; the modal's
submission carries the confirmation token in its ``private_metadata`` and is the approval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

import aiohttp
from fastapi import APIRouter
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.slack.blocks import (
    APPROVE_ACTION,
    APPROVE_FOR_ACTION,
    CONFIRM_VIEW,
    DENY_ACTION,
    DENY_WITH_REASON_ACTION,
    EDIT_LINK_ACTION,
    REASON_BLOCK,
    REASON_INPUT,
    REASON_VIEW,
    confirm_modal,
    confirm_token_in,
    metadata,
    parse_metadata,
    reason_modal,
    render_card,
    render_notice,
)
from adapters.slack.references import decode_grant_value, decode_value, encode_value
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

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
DEFAULT_API_URL = "https://slack.com/api/"
DEFAULT_SEND_INTERVAL = timedelta(seconds=1)
"""Slack allows about one message a second per channel."""
DEFAULT_RETRY_AFTER = timedelta(seconds=1)
"""The wait after a 429 that came without a usable ``Retry-After``."""
SOCKET_CONNECT_TIMEOUT = 10.0
"""Seconds ``start()`` waits for Socket Mode; after that it keeps connecting in the background."""
STOP_TIMEOUT = 5.0
"""Seconds ``stop()`` lets clicks in progress finish."""
HTTP_TIMEOUT = 20
"""Seconds for one Web API call: well inside the outbox's own send timeout."""

PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "restricted_action",
    }
)
"""Web API errors retrying cannot fix. Others (auth trouble included) are retried."""

GENERIC_FAILURE = "Something went wrong and your click was not counted. Please try again."

FOREIGN_TEAM = "foreign_team"
"""Audit code of a click from a workspace other than the one signoff is installed in."""


@dataclass(frozen=True)
class Click:
    """A button click or modal submission, as far as signoff cares.

    Attributes:
        team_id: the clicking user's workspace.
        raw_value: the button value as received (untrusted).
        request_id: the request the value names, or ``None`` when it is not one of ours.
        channel: where the message clicked on lives.
        ts: the clicked message's timestamp (its id within the channel).
    """

    team_id: str | None
    user_id: str
    raw_value: str | None
    channel: str | None
    ts: str | None
    trigger_id: str | None = None

    @property
    def request_id(self) -> str | None:
        return decode_value(self.raw_value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def team_of(body: dict[str, Any]) -> str | None:
    """The clicking user's workspace (in shared channels it may differ from ``team.id``)."""
    return _text(_dict(body.get("user")).get("team_id")) or _text(_dict(body.get("team")).get("id"))


def parse_click(body: dict[str, Any]) -> Click | None:
    """The click in a ``block_actions`` payload, or ``None`` when it has no user."""
    user = _text(_dict(body.get("user")).get("id"))
    if user is None:
        return None
    actions = body.get("actions")
    action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
    container = _dict(body.get("container"))
    channel = _text(container.get("channel_id")) or _text(_dict(body.get("channel")).get("id"))
    ts = _text(container.get("message_ts")) or _text(_dict(body.get("message")).get("ts"))
    return Click(
        team_id=team_of(body),
        user_id=user,
        raw_value=_text(action.get("value")),
        channel=channel,
        ts=ts,
        trigger_id=_text(body.get("trigger_id")),
    )


def delivery_error(exc: Exception) -> DeliveryError:
    """A Web API failure as the outbox understands it: when to retry, or not at all."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = response.status_code
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        if status == 429 or error == "ratelimited":
            return DeliveryError(
                f"Slack rate limit ({error})", retry_after=_retry_after(response.headers)
            )
        if status >= 500:
            return DeliveryError(f"Slack answered HTTP {status}")
        return DeliveryError(f"Slack refused: {error}", permanent=error in PERMANENT_ERRORS)
    return DeliveryError(f"Slack unreachable: {type(exc).__name__}: {exc}")


def _retry_after(headers: Any) -> timedelta:
    raw = None
    if headers is not None:
        raw = headers.get("Retry-After") or headers.get("retry-after")
    return parse_retry_after(raw, default=DEFAULT_RETRY_AFTER)


class SlackAdapter:
    """Slack for signoff, in HTTP or Socket Mode. See the module docstring.

    Attributes:
        platform: ``slack``.
        min_send_interval: least time between two posts to one channel (default 1 s).
    """

    platform = PLATFORM

    def __init__(
        self,
        *,
        bot_token: str,
        public_url: str,
        mode: Literal["http", "socket"] = "http",
        signing_secret: str | None = None,
        app_token: str | None = None,
        api_url: str = DEFAULT_API_URL,
        min_send_interval: timedelta = DEFAULT_SEND_INTERVAL,
        socket_ping_interval: float = 10.0,
        http_timeout: int = HTTP_TIMEOUT,
    ) -> None:
        if mode == "http" and not signing_secret:
            raise ValueError("Slack HTTP mode needs the signing secret")
        if mode == "socket" and not app_token:
            raise ValueError("Slack Socket Mode needs the app token (xapp-...)")
        self.min_send_interval = min_send_interval
        self._public_url = public_url
        self._mode = mode
        self._api_url = api_url
        self._app_token = app_token
        self._socket_ping_interval = socket_ping_interval
        self._client = AsyncWebClient(token=bot_token, base_url=api_url, timeout=http_timeout)
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        # An empty secret would make bolt read SLACK_SIGNING_SECRET from the environment.
        self._app = AsyncApp(
            name="signoff",
            client=self._client,
            signing_secret=signing_secret or "unused-in-socket-mode",
        )
        self._app.action(APPROVE_ACTION)(self._on_approve)
        self._app.action(APPROVE_FOR_ACTION)(self._on_approve_for)
        self._app.action(DENY_ACTION)(self._on_deny)
        self._app.action(DENY_WITH_REASON_ACTION)(self._on_deny_with_reason)
        self._app.action(EDIT_LINK_ACTION)(self._on_edit_link)
        self._app.view(REASON_VIEW)(self._on_reason_submitted)
        self._app.view(CONFIRM_VIEW)(self._on_confirm_submitted)
        self._team_id: str | None = None
        self._dm_channels: dict[str, str] = {}
        self._sink: VoteSink | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._inbound_wanted = True

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def inbound_is_singleton(self) -> bool:
        """Socket Mode runs in one process at a time; HTTP events reach any process."""
        return self._mode == "socket"

    async def start(self, sink: VoteSink, *, inbound: bool = True) -> None:
        """Learn our workspace (``auth.test``) and, in Socket Mode, connect.

        With ``inbound=False`` Socket Mode waits for :meth:`start_inbound`.
        """
        self._sink = sink
        self._inbound_wanted = inbound
        await self._our_team()
        if self._mode == "socket" and inbound:
            connecting = self._open_socket()
            done, _pending = await asyncio.wait({connecting}, timeout=SOCKET_CONNECT_TIMEOUT)
            if not done:
                log.warning("Slack Socket Mode is not connected yet; still trying")

    def _open_socket(self) -> asyncio.Task[None]:
        assert self._app_token is not None
        self._socket = AsyncSocketModeHandler(
            self._app,
            app_token=self._app_token,
            web_client=AsyncWebClient(token=self._app_token, base_url=self._api_url),
            ping_interval=self._socket_ping_interval,
        )
        self._connecting = asyncio.create_task(
            self._socket.connect_async(),  # type: ignore[no-untyped-call]
            name="slack-socket-connect",
        )
        return self._connecting

    async def start_inbound(self) -> None:
        """Open Socket Mode (in socket mode) without waiting for it to be connected."""
        self._inbound_wanted = True
        if self._mode == "socket" and self._socket is None:
            self._open_socket()

    async def stop_inbound(self) -> None:
        """Close Socket Mode at once; sending keeps working."""
        self._inbound_wanted = False
        await self._close_socket()

    async def _close_socket(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
            self._connecting = None

    async def stop(self) -> None:
        """Close Socket Mode and let clicks in progress finish."""
        await self._close_socket()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_TIMEOUT)
        # Let the Socket Mode client's cancelled tasks unwind before the loop moves on.
        await asyncio.sleep(0)
        self._sink = None

    async def check_health(self) -> bool:
        """The bot token works and, when this process holds Socket Mode, the connection is up."""
        try:
            response = await self._client.auth_test()
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError):
            return False
        if not response.get("ok"):
            return False
        if self._mode == "socket" and self._inbound_wanted:
            return self._socket is not None and await self._socket.client.is_connected()
        return True

    def router(self) -> APIRouter:
        """``POST /slack/events`` in HTTP mode (nothing in Socket Mode)."""
        router = APIRouter()
        if self._mode != "http":
            return router
        handler = AsyncSlackRequestHandler(self._app)

        async def slack_events(request: Request) -> Response:
            # bolt verifies too; checking first also refuses what bolt answers without a
            # signature (ssl_check) and timestamps that are not numbers.
            body = await request.body()
            if not self._signed(body, request):
                return JSONResponse({"error": "invalid request"}, status_code=401)
            return await handler.handle(request)

        router.add_api_route(EVENTS_PATH, slack_events, methods=["POST"], include_in_schema=False)
        return router

    def _signed(self, body: bytes, request: Request) -> bool:
        if self._verifier is None:
            return False
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        if timestamp is None or signature is None or not timestamp.isdigit():
            return False
        return self._verifier.is_valid(body, timestamp, signature)

    # -- outbound ---------------------------------------------------------------------------

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        message = render_card(card, public_url=self._public_url)
        if destination.kind is DestinationKind.USER:
            channel = await self._dm_channel(destination.target)
        else:
            channel = destination.target
        response = await self._call(
            self._client.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        )
        return MessageRef(
            PLATFORM, {"channel": str(response["channel"]), "ts": str(response["ts"])}
        )

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        channel, ts = _where(ref)
        message = render_card(card, public_url=self._public_url)
        await self._call(
            self._client.chat_update(
                channel=channel, ts=ts, text=message.text, blocks=message.blocks
            )
        )

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        channel, ts = _where(ref)
        await self._call(
            self._client.chat_postMessage(
                channel=channel, thread_ts=ts, text=render_notice(text), unfurl_links=False
            )
        )

    async def _dm_channel(self, user: str) -> str:
        channel = self._dm_channels.get(user)
        if channel is None:
            response = await self._call(self._client.conversations_open(users=user))
            channel = str(_dict(response.get("channel")).get("id"))
            self._dm_channels[user] = channel
        return channel

    @staticmethod
    async def _call(request: Awaitable[Any]) -> Any:
        try:
            return await request
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise delivery_error(exc) from exc

    # -- inbound ----------------------------------------------------------------------------

    async def _on_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await self._guarded(body, self._take_approve_click(body))

    async def _on_confirm_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        await ack()  # closes the modal; what the core says is told ephemerally
        user = _text(_dict(body.get("user")).get("id"))
        if user is None:
            return
        where = parse_metadata(view.get("private_metadata"))
        value, channel, ts = where if where is not None else (None, None, None)
        click = Click(team_id=team_of(body), user_id=user, raw_value=value, channel=channel, ts=ts)
        token = confirm_token_in(view.get("private_metadata"))
        await self._guarded(body, self._take_admitted_vote(click, Verdict.APPROVE, None, token))

    async def _on_approve_for(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await self._guarded(body, self._take_approve_for(body))

    async def _take_approve_for(self, body: dict[str, Any]) -> None:
        """An "Approve for ..." choice: an approval that also asks for a time-boxed grant
        of the chosen length (the core checks it against the policy)."""
        click = parse_click(body)
        if click is None:
            return
        actions = body.get("actions")
        action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
        option = _text(_dict(action.get("selected_option")).get("value"))
        chosen = decode_grant_value(option)
        if chosen is None:
            click = replace(click, raw_value=option)
            # Not one of our options: the core refuses and audits it as a foreign button.
            await self._take_admitted_vote(click, Verdict.APPROVE, None)
            return
        request_id, seconds = chosen
        click = replace(click, raw_value=encode_value(request_id))
        await self._take_admitted_vote(
            click, Verdict.APPROVE, None, grant_for=timedelta(seconds=seconds)
        )

    async def _on_edit_link(self, ack: AsyncAck) -> None:
        # A URL button: Slack opened the inbox page for the person and tells us of the
        # click, which is no vote. Acknowledged so Slack shows no error.
        await ack()

    async def _on_deny(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await self._guarded(body, self._take_deny_click(body, ask_reason=False))

    async def _on_deny_with_reason(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await self._guarded(body, self._take_deny_click(body, ask_reason=True))

    async def _on_reason_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        reason = _reason_in(view)
        where = parse_metadata(view.get("private_metadata"))
        if not (reason and reason.strip()) and where is not None:
            request_id = decode_value(where[0])
            sink = self._sink
            card = await sink.card(request_id) if request_id and sink else None
            if card is not None and card.require_reason:
                await ack(
                    response_action="errors",
                    errors={REASON_BLOCK: "This request's policy needs a reason to deny."},
                )
                return
        await ack()
        user = _text(_dict(body.get("user")).get("id"))
        if user is None:
            return
        value, channel, ts = where if where is not None else (None, None, None)
        click = Click(team_id=team_of(body), user_id=user, raw_value=value, channel=channel, ts=ts)
        await self._guarded(body, self._take_admitted_vote(click, Verdict.DENY, reason))

    async def _guarded(self, body: dict[str, Any], work: Awaitable[None]) -> None:
        """The one inbound error hook: log with context, tell the person briefly."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await work
        except Exception:
            click = parse_click(body)
            log.exception(
                "Slack click failed (team %s, user %s, value %r)",
                click.team_id if click else None,
                click.user_id if click else None,
                click.raw_value if click else None,
                extra={"request_id": click.request_id if click else None},
            )
            if click is not None:
                await self._tell(click, GENERIC_FAILURE)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _take_admitted_vote(
        self,
        click: Click,
        verdict: Verdict,
        reason: str | None,
        confirm_token: str | None = None,
        *,
        grant_for: timedelta | None = None,
    ) -> None:
        """Hand the click to the core, which checks, judges, counts or refuses, and audits."""
        core_click = await self._core_click(click, verdict, reason, grant_for=grant_for)
        sink = await self._running_sink(click) if core_click is not None else None
        if core_click is not None and sink is not None:
            core_click = replace(core_click, confirm_token=confirm_token)
            await self._tell_outcome(click, await sink.handle_click(core_click))

    async def _take_approve_click(self, body: dict[str, Any]) -> None:
        """Approve: a vote at once, or, where the policy needs approvals confirmed, the
        confirmation modal (the core says which; its submission is the vote)."""
        click = parse_click(body)
        if click is None:
            return
        core_click = await self._core_click(click, Verdict.APPROVE, None)
        sink = await self._running_sink(click) if core_click is not None else None
        if core_click is None or sink is None:
            return
        prompt = await sink.confirm_prompt(core_click)
        if prompt is None:
            await self._tell_outcome(click, await sink.handle_click(core_click))
            return
        if click.trigger_id is None or click.channel is None or click.ts is None:
            await self._tell(click, GENERIC_FAILURE)
            return
        view = confirm_modal(
            prompt,
            private_metadata=metadata(
                encode_value(prompt.request_id), click.channel, click.ts, prompt.token
            ),
        )
        await self._client.views_open(trigger_id=click.trigger_id, view=view)

    async def _take_deny_click(self, body: dict[str, Any], *, ask_reason: bool) -> None:
        click = parse_click(body)
        if click is None:
            return
        if not ask_reason:
            sink = self._sink
            card = await sink.card(click.request_id) if click.request_id and sink else None
            if card is None or not card.require_reason:
                # The core refuses what must be refused (a missing request included).
                await self._take_admitted_vote(click, Verdict.DENY, None)
                return
        core_click = await self._core_click(click, Verdict.DENY, None)
        sink = await self._running_sink(click) if core_click is not None else None
        if core_click is None or sink is None:
            return
        # Judged before the form opens, so nobody types a reason only to be refused.
        prompt = await sink.reason_prompt(core_click)
        if not isinstance(prompt, ReasonPrompt):
            await self._tell_outcome(click, prompt)
            return
        if click.trigger_id is None or click.channel is None or click.ts is None:
            await self._tell(click, GENERIC_FAILURE)
            return
        view = reason_modal(
            prompt.title,
            private_metadata=metadata(encode_value(prompt.request_id), click.channel, click.ts),
            require_reason=prompt.require_reason,
        )
        await self._client.views_open(trigger_id=click.trigger_id, view=view)

    async def _core_click(
        self,
        click: Click,
        verdict: Verdict,
        reason: str | None,
        *,
        grant_for: timedelta | None = None,
    ) -> CoreClick | None:
        """The click as the core takes it; ``None`` (the person told) while our own
        workspace is unknown because Slack cannot be reached."""
        team = await self._our_team()
        if team is None:
            await self._tell(click, "signoff cannot reach Slack right now; please try again.")
            return None
        foreign = None
        if click.team_id != team:
            foreign = Foreign(
                FOREIGN_TEAM,
                f"team {click.team_id}: click from workspace {click.team_id!r}, not {team!r}",
                "only members of the workspace signoff is installed in can decide",
            )
        message = None
        if click.channel is not None and click.ts is not None:
            message = {"channel": click.channel, "ts": click.ts}
        return CoreClick(
            platform=PLATFORM,
            identity=click.user_id,
            request_id=click.request_id,
            raw_reference=click.raw_value,
            message=message,
            verdict=verdict,
            reason=reason,
            foreign=foreign,
            grant_for=grant_for,
        )

    async def _running_sink(self, click: Click) -> VoteSink | None:
        """Where clicks go; ``None`` (the person told) while signoff starts or stops."""
        if self._sink is None:
            await self._tell(click, "signoff is starting or stopping; please try again.")
        return self._sink

    async def _tell_outcome(self, click: Click, outcome: ClickOutcome) -> None:
        notice = click_notice(outcome)
        if notice is not None:
            await self._tell(click, notice)

    async def _tell(self, click: Click, text: str) -> None:
        """An ephemeral message to the person who clicked; failures are only logged."""
        if click.channel is None:
            log.info("cannot tell Slack user %s (no channel): %s", click.user_id, text)
            return
        try:
            await self._client.chat_postEphemeral(
                channel=click.channel, user=click.user_id, text=render_notice(text)
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("could not tell Slack user %s: %s", click.user_id, exc)

    async def _our_team(self) -> str | None:
        """Our workspace id, from ``auth.test`` (asked once, again while it fails)."""
        if self._team_id is None:
            try:
                response = await self._client.auth_test()
            except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("Slack auth.test failed: %s", exc)
                return None
            self._team_id = _text(response.get("team_id"))
        return self._team_id


def _where(ref: MessageRef) -> tuple[str, str]:
    channel, ts = ref.data.get("channel"), ref.data.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        raise DeliveryError(f"not a Slack message reference: {ref.data!r}", permanent=True)
    return channel, ts


def _reason_in(view: dict[str, Any]) -> str | None:
    values = _dict(_dict(view.get("state")).get("values"))
    return _text(_dict(_dict(values.get(REASON_BLOCK)).get(REASON_INPUT)).get("value"))
