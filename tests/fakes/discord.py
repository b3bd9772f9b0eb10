"""A fake Discord on 127.0.0.1: the REST API and the gateway websocket.

The real discord.py talks to it: login (``/users/@me``, ``/oauth2/applications/@me``),
messages in channels and DMs, interaction callbacks, followups and ``@original`` edits;
and the gateway (HELLO, heartbeat ACKs, READY and GUILD_CREATE on IDENTIFY, RESUME with a
replay of what the session missed, INTERACTION_CREATE dispatches with increasing ``s``).
Text frames only, so no zlib-stream is needed.

It records every REST call with the moment it arrived, keeps the messages posted (and their
edits), injects faults (429 with ``Via`` and ``retry_after`` in the body, 5xx, 403/404),
can run per-channel rate-limit buckets that send ``X-RateLimit-*`` headers and answer 429
to a request on an exhausted bucket, and can close the gateway socket. Every response's
Content-Type is exactly ``application/json``: discord.py's login fails on a charset suffix.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

API = "/api/v10"
APPLICATION_ID = "900000000000000001"
BOT_USER_ID = "900000000000000002"
OWNER_ID = "900000000000000003"
GUILD_ID = "400000000000000001"
EPHEMERAL = 64
HEARTBEAT_INTERVAL_MS = 41250


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@dataclass(frozen=True)
class Fault:
    """One injected failure. 429s carry ``retry_after`` in the body and, with ``via``, a
    ``Via`` header (discord.py retries those by itself); ``retry_after_header`` adds
    ``Retry-After``."""

    status: int
    retry_after: float | None = None
    via: bool = True
    retry_after_header: bool = True
    is_global: bool = False


@dataclass
class ApiCall:
    """One REST request as the fake saw it."""

    route: str
    method: str
    path: str
    body: dict[str, Any] | None
    query: dict[str, str]
    token: str | None
    at: float
    status: int = 200
    channel_id: str | None = None


@dataclass
class Message:
    """A message as the fake holds it; ``history`` keeps every rendering, the first one first."""

    id: str
    channel_id: str
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    allowed_mentions: dict[str, Any] | None
    flags: int = 0
    message_reference: dict[str, Any] | None = None
    author_id: str = BOT_USER_ID
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [
            component
            for row in self.components
            for component in row.get("components", [])
            if component.get("type") == 2
        ]

    def button(self, label: str) -> dict[str, Any]:
        """The button labelled ``label`` now shown, else in an earlier rendering (a stale
        client still showing the old card)."""
        renderings = [self.components, *(r["components"] for r in reversed(self.history))]
        for components in renderings:
            for row in components:
                for button in row.get("components", []):
                    if button.get("label") == label:
                        return dict(button)
        raise AssertionError(f"no {label!r} button on {self.channel_id}/{self.id}")

    @property
    def embed(self) -> dict[str, Any]:
        return self.embeds[0] if self.embeds else {}

    @property
    def all_text(self) -> str:
        return json.dumps({"content": self.content, "embeds": self.embeds}, ensure_ascii=False)

    def field(self, name: str) -> str:
        for item in self.embed.get("fields", []):
            if item.get("name") == name:
                return str(item.get("value"))
        raise AssertionError(f"no field {name!r} on {self.channel_id}/{self.id}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "channel_id": self.channel_id,
            "type": 19 if self.message_reference else 0,
            "content": self.content,
            "author": _user_json(self.author_id, "signoff", bot=True),
            "attachments": [],
            "embeds": self.embeds,
            "components": self.components,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "edited_timestamp": None,
            "flags": self.flags,
        }
        if self.message_reference:
            data["message_reference"] = self.message_reference
        return data


@dataclass
class Interaction:
    """An interaction the fake dispatched, and how the app answered it."""

    id: str
    token: str
    user_id: str
    payload: dict[str, Any]
    responses: list[dict[str, Any]] = field(default_factory=list)
    followups: list[Message] = field(default_factory=list)
    original_edits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def response_types(self) -> list[int]:
        return [r.get("type", 0) for r in self.responses]

    @property
    def answered(self) -> bool:
        return bool(self.responses)

    @property
    def modal(self) -> dict[str, Any] | None:
        for response in self.responses:
            if response.get("type") == 9:
                return dict(response.get("data") or {})
        return None

    @property
    def ephemeral_texts(self) -> list[str]:
        texts = [
            str((r.get("data") or {}).get("content", ""))
            for r in self.responses
            if r.get("type") == 4 and (r.get("data") or {}).get("flags", 0) & EPHEMERAL
        ]
        texts += [m.content for m in self.followups if m.flags & EPHEMERAL]
        return texts


@dataclass
class Bucket:
    """A per-channel rate limit bucket, as Discord keeps one for each route and channel."""

    remaining: int
    reset_at: float


@dataclass
class Session:
    """A gateway session: the events it was sent, for RESUME to replay."""

    id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sequence(self) -> int:
        return self.events[-1]["s"] if self.events else 0


def _user_json(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
    }


class FakeDiscord:
    """See the module docstring. ``start()`` binds 127.0.0.1 on a free port."""

    def __init__(self, *, bot_token: str) -> None:
        self.bot_token = bot_token
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.interactions: dict[str, Interaction] = {}
        self.dm_channels: dict[str, str] = {}
        self.missing_channels: set[str] = set()
        self.forbidden_channels: set[str] = set()
        self.gateway_down = False
        """While set, new gateway connections are refused (503), as in an outage."""
        self.replayed: list[dict[str, Any]] = []
        """Events sent by a RESUME's replay rather than live."""
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self.bucket_limit: int | None = None
        """With a value, message posts run in per-channel buckets of this many requests."""
        self.bucket_reset_after = 0.5
        self.buckets: dict[str, Bucket] = {}
        self._faults: dict[str, list[Fault]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._sockets: list[tuple[web.WebSocketResponse, Session]] = []
        self._sessions: dict[str, Session] = {}
        self._current: Session | None = None
        self._runner: web.AppRunner | None = None
        self._shutdown = asyncio.Event()
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(f"{API}/users/@me", self._me)
        app.router.add_get(f"{API}/oauth2/applications/@me", self._application)
        app.router.add_post(f"{API}/users/@me/channels", self._create_dm)
        app.router.add_post(f"{API}/channels/{{channel_id}}/messages", self._create_message)
        app.router.add_patch(
            f"{API}/channels/{{channel_id}}/messages/{{message_id}}", self._edit_message
        )
        app.router.add_post(
            f"{API}/interactions/{{interaction_id}}/{{token}}/callback", self._callback
        )
        app.router.add_post(f"{API}/webhooks/{{application_id}}/{{token}}", self._followup)
        app.router.add_patch(
            f"{API}/webhooks/{{application_id}}/{{token}}/messages/@original", self._edit_original
        )
        app.router.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._shutdown.set()
        for socket, _session in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- fault injection ----------------------------------------------------------------

    def fail_next(self, route: str, fault: Fault, *, times: int = 1) -> None:
        """The next ``times`` calls of ``route`` (``create_message``, ``edit_message``,
        ``create_dm``, ``callback``, ``followup``, ``edit_original``) get ``fault``."""
        self._faults[route].extend([fault] * times)

    # -- REST ---------------------------------------------------------------------------

    async def _record(self, route: str, request: web.Request) -> ApiCall:
        body: dict[str, Any] | None = None
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
            elif request.content_type.startswith("multipart/"):
                form = await request.post()
                raw = form.get("payload_json")
                body = json.loads(str(raw)) if raw is not None else {}
        auth = request.headers.get("Authorization", "")
        call = ApiCall(
            route=route,
            method=request.method,
            path=request.path,
            body=body,
            query=dict(request.query),
            token=auth.removeprefix("Bot ") if auth.startswith("Bot ") else None,
            at=time.monotonic(),
            channel_id=request.match_info.get("channel_id"),
        )
        self.calls.append(call)
        return call

    def _fault(self, call: ApiCall) -> web.Response | None:
        if not self._faults[call.route]:
            return None
        fault = self._faults[call.route].pop(0)
        call.status = fault.status
        if fault.status == 429:
            retry_after = 1.0 if fault.retry_after is None else fault.retry_after
            headers = {}
            if fault.via:
                headers["Via"] = "1.1 google"
            if fault.retry_after_header:
                headers["Retry-After"] = str(max(1, round(retry_after)))
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": fault.is_global,
                "code": 0,
            }
            return json_response(body, 429, headers)
        if fault.status >= 500:
            return json_response({"message": "upstream trouble", "code": 0}, fault.status)
        return json_response({"message": "refused", "code": 50001}, fault.status)

    def _unauthorized(self, call: ApiCall) -> web.Response | None:
        if call.token != self.bot_token:
            call.status = 401
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        return None

    async def _me(self, request: web.Request) -> web.Response:
        call = await self._record("me", request)
        refused = self._unauthorized(call) or self._fault(call)
        if refused is not None:
            return refused
        return json_response(
            {**_user_json(BOT_USER_ID, "signoff", bot=True), "flags": 0, "mfa_enabled": False}
        )

    async def _application(self, request: web.Request) -> web.Response:
        call = await self._record("application", request)
        refused = self._unauthorized(call) or self._fault(call)
        if refused is not None:
            return refused
        return json_response(
            {
                "id": APPLICATION_ID,
                "name": "signoff",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": _user_json(OWNER_ID, "owner"),
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _create_dm(self, request: web.Request) -> web.Response:
        call = await self._record("create_dm", request)
        refused = self._unauthorized(call) or self._fault(call)
        if refused is not None:
            return refused
        recipient = str((call.body or {}).get("recipient_id", ""))
        channel = self.dm_channels.setdefault(recipient, str(500000000000000000 + int(recipient)))
        return json_response(
            {
                "id": channel,
                "type": 1,
                "last_message_id": None,
                "recipients": [_user_json(recipient, f"user{recipient}")],
            }
        )

    def _bucket_headers(
        self, call: ApiCall, channel: str
    ) -> tuple[web.Response | None, dict[str, str]]:
        """Per-channel bucket bookkeeping: headers to send, or a 429 for an exhausted bucket."""
        if self.bucket_limit is None:
            return None, {}
        now = time.monotonic()
        bucket = self.buckets.get(channel)
        if bucket is None or now >= bucket.reset_at:
            bucket = Bucket(self.bucket_limit, now + self.bucket_reset_after)
            self.buckets[channel] = bucket
        if bucket.remaining <= 0:
            call.status = 429
            retry_after = max(bucket.reset_at - now, 0.0)
            body = {
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": False,
            }
            return json_response(body, 429, {"Via": "1.1 google", "X-RateLimit-Scope": "user"}), {}
        bucket.remaining -= 1
        reset_after = max(bucket.reset_at - now, 0.0)
        headers = {
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": "fakebucketmessages",
        }
        return None, headers

    def _channel_trouble(self, call: ApiCall, channel: str) -> web.Response | None:
        if channel in self.missing_channels:
            call.status = 404
            return json_response({"message": "Unknown Channel", "code": 10003}, 404)
        if channel in self.forbidden_channels:
            call.status = 403
            return json_response({"message": "Missing Access", "code": 50001}, 403)
        return None

    async def _create_message(self, request: web.Request) -> web.Response:
        call = await self._record("create_message", request)
        channel = request.match_info["channel_id"]
        refused = self._unauthorized(call) or self._fault(call)
        refused = refused or self._channel_trouble(call, channel)
        if refused is not None:
            return refused
        limited, headers = self._bucket_headers(call, channel)
        if limited is not None:
            return limited
        body = call.body or {}
        message = Message(
            id=str(next(self._ids) + 600000000000000000),
            channel_id=channel,
            content=str(body.get("content") or ""),
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            allowed_mentions=body.get("allowed_mentions"),
            flags=int(body.get("flags") or 0),
            message_reference=_snowflakes_as_text(body.get("message_reference")),
        )
        message.history.append(self._rendering(body))
        self.messages[(channel, message.id)] = message
        return json_response(message.to_json(), headers=headers)

    @staticmethod
    def _rendering(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "content": body.get("content"),
            "embeds": list(body.get("embeds") or []),
            "components": list(body.get("components") or []),
            "allowed_mentions": body.get("allowed_mentions"),
        }

    async def _edit_message(self, request: web.Request) -> web.Response:
        call = await self._record("edit_message", request)
        channel, message_id = request.match_info["channel_id"], request.match_info["message_id"]
        refused = self._unauthorized(call) or self._fault(call)
        refused = refused or self._channel_trouble(call, channel)
        if refused is not None:
            return refused
        message = self.messages.get((channel, message_id))
        if message is None:
            call.status = 404
            return json_response({"message": "Unknown Message", "code": 10008}, 404)
        self._apply_edit(message, call.body or {})
        return json_response(message.to_json())

    def _apply_edit(self, message: Message, body: dict[str, Any]) -> None:
        if "content" in body:
            message.content = str(body.get("content") or "")
        if "embeds" in body:
            message.embeds = list(body.get("embeds") or [])
        if "components" in body:
            message.components = list(body.get("components") or [])
        message.allowed_mentions = body.get("allowed_mentions")
        message.history.append(self._rendering(body))

    async def _callback(self, request: web.Request) -> web.Response:
        call = await self._record("callback", request)
        refused = self._fault(call)
        if refused is not None:
            return refused
        interaction = self.interactions.get(request.match_info["interaction_id"])
        if interaction is None or interaction.token != request.match_info["token"]:
            call.status = 404
            return json_response({"message": "Unknown interaction", "code": 10062}, 404)
        if interaction.responses:
            call.status = 400
            return json_response(
                {"message": "Interaction has already been acknowledged.", "code": 40060}, 400
            )
        body = call.body or {}
        interaction.responses.append(body)
        data = body.get("data") or {}
        response_type = int(body.get("type", 0))
        result: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.payload["type"],
                "response_message_loading": response_type == 5,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & EPHEMERAL),
            }
        }
        if response_type == 4:
            message = Message(
                id=str(next(self._ids) + 700000000000000000),
                channel_id=str(interaction.payload["channel_id"]),
                content=str(data.get("content") or ""),
                embeds=list(data.get("embeds") or []),
                components=list(data.get("components") or []),
                allowed_mentions=data.get("allowed_mentions"),
                flags=int(data.get("flags") or 0),
            )
            result["interaction"]["response_message_id"] = message.id
            result["resource"] = {"type": 4, "message": message.to_json()}
        return json_response(result)

    def _interaction_by_token(self, token: str) -> Interaction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    async def _followup(self, request: web.Request) -> web.Response:
        call = await self._record("followup", request)
        refused = self._fault(call)
        if refused is not None:
            return refused
        interaction = self._interaction_by_token(request.match_info["token"])
        if interaction is None or not interaction.responses:
            call.status = 404
            return json_response({"message": "Unknown Webhook", "code": 10015}, 404)
        body = call.body or {}
        message = Message(
            id=str(next(self._ids) + 700000000000000000),
            channel_id=str(interaction.payload["channel_id"]),
            content=str(body.get("content") or ""),
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            allowed_mentions=body.get("allowed_mentions"),
            flags=int(body.get("flags") or 0),
        )
        interaction.followups.append(message)
        data = message.to_json()
        data["webhook_id"] = APPLICATION_ID
        return json_response(data)

    async def _edit_original(self, request: web.Request) -> web.Response:
        call = await self._record("edit_original", request)
        refused = self._fault(call)
        if refused is not None:
            return refused
        interaction = self._interaction_by_token(request.match_info["token"])
        if interaction is None:
            call.status = 404
            return json_response({"message": "Unknown Webhook", "code": 10015}, 404)
        body = call.body or {}
        interaction.original_edits.append(body)
        raw = interaction.payload.get("message") or {}
        message = self.messages.get((str(raw.get("channel_id")), str(raw.get("id"))))
        if message is None:
            call.status = 404
            return json_response({"message": "Unknown Message", "code": 10008}, 404)
        self._apply_edit(message, body)
        return json_response(message.to_json())

    # -- queries ------------------------------------------------------------------------

    def calls_to(self, route: str) -> list[ApiCall]:
        return [call for call in self.calls if call.route == route]

    def posts_in(self, channel: str) -> list[Message]:
        """Messages posted in ``channel`` (replies included), oldest first."""
        return [m for m in self.messages.values() if m.channel_id == channel]

    def cards_in(self, channel: str) -> list[Message]:
        """Top-level messages (not replies) posted in ``channel``, oldest first."""
        return [m for m in self.posts_in(channel) if not m.message_reference]

    def ephemerals_for(self, user_id: str) -> list[str]:
        return [
            text
            for interaction in self.interactions.values()
            if interaction.user_id == user_id
            for text in interaction.ephemeral_texts
        ]

    def outbound_payloads(self) -> list[dict[str, Any]]:
        """Every message body signoff sent: posts, edits, callbacks with a message, followups."""
        payloads: list[dict[str, Any]] = []
        for call in self.calls:
            body = call.body or {}
            if call.route in ("create_message", "edit_message", "followup", "edit_original"):
                payloads.append(body)
            elif call.route == "callback" and body.get("type") in (4, 7):
                payloads.append(body.get("data") or {})
        return payloads

    # -- gateway ------------------------------------------------------------------------

    @property
    def connected(self) -> int:
        return len([s for s, _session in self._sockets if not s.closed])

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        if request.remote != "127.0.0.1":
            raise web.HTTPForbidden()
        if self.gateway_down:
            raise web.HTTPServiceUnavailable()
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(
            json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None})
        )
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                op = data.get("op")
                if op == 1:
                    self.heartbeats += 1
                    await socket.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    await self._identify(socket, data.get("d") or {})
                elif op == 6:
                    await self._resume(socket, data.get("d") or {})
        finally:
            self._sockets = [(s, x) for s, x in self._sockets if s is not socket]
        return socket

    async def _identify(
        self, socket: web.WebSocketResponse, data: dict[str, Any]
    ) -> Session | None:
        if data.get("token") != self.bot_token:
            await socket.close(code=4004, message=b"Authentication failed.")
            return None
        self.identifies += 1
        session = Session(id=f"session-{self.identifies}")
        self._sessions[session.id] = session
        self._current = session
        self._sockets.append((socket, session))
        ready = {
            "v": 10,
            "user": _user_json(BOT_USER_ID, "signoff", bot=True),
            "guilds": [{"id": GUILD_ID, "unavailable": True}],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": APPLICATION_ID, "flags": 0},
        }
        await self._dispatch(session, "READY", ready)
        await self._dispatch(session, "GUILD_CREATE", self._guild())
        return session

    async def _resume(self, socket: web.WebSocketResponse, data: dict[str, Any]) -> Session | None:
        session = self._sessions.get(str(data.get("session_id")))
        if data.get("token") != self.bot_token or session is None:
            await socket.send_str(json.dumps({"op": 9, "d": False}))
            return None
        self.resumes += 1
        self._current = session
        self._sockets.append((socket, session))
        seen = int(data.get("seq") or 0)
        for event in session.events:
            if event["s"] > seen:
                self.replayed.append(event)
                await socket.send_str(json.dumps(event))
        await self._dispatch(session, "RESUMED", {})
        return session

    @staticmethod
    def _guild() -> dict[str, Any]:
        return {
            "id": GUILD_ID,
            "name": "signoff test",
            "icon": None,
            "owner_id": OWNER_ID,
            "unavailable": False,
            "member_count": 3,
            "large": False,
            "roles": [
                {
                    "id": GUILD_ID,
                    "name": "@everyone",
                    "permissions": "0",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [
                {"id": "300001", "type": 0, "name": "ops", "position": 0, "guild_id": GUILD_ID}
            ],
            "threads": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "joined_at": "2026-01-01T00:00:00.000000+00:00",
        }

    async def _dispatch(self, session: Session, event: str, data: dict[str, Any]) -> None:
        """Number ``event`` in ``session`` and send it on the session's live socket, if any;
        a session without one keeps it for RESUME to replay."""
        frame = {"op": 0, "t": event, "s": session.sequence + 1, "d": data}
        session.events.append(frame)
        for socket, owner in self._sockets:
            if owner is session and not socket.closed:
                await socket.send_str(json.dumps(frame))
                break

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway socket from the server side (4000: an error; resumable)."""
        for socket, _session in list(self._sockets):
            await socket.close(code=code, message=b"dropped by the test")

    # -- interactions -------------------------------------------------------------------

    def _interaction(
        self,
        *,
        kind: int,
        user_id: str,
        message: Message,
        data: dict[str, Any],
        channel_id: str | None = None,
        message_id: str | None = None,
        application_id: str = APPLICATION_ID,
    ) -> Interaction:
        number = next(self._ids)
        interaction_id = str(800000000000000000 + number)
        token = f"interaction-token-{number}"
        channel_id = message.channel_id if channel_id is None else channel_id
        shown = message.to_json()
        shown["id"] = message.id if message_id is None else message_id
        shown["channel_id"] = channel_id
        in_dm = channel_id in self.dm_channels.values()
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": application_id,
            "type": kind,
            "data": data,
            "channel_id": channel_id,
            "channel": self._channel_json(channel_id, user_id, in_dm),
            "token": token,
            "version": 1,
            "message": shown,
            "locale": "en-US",
            "app_permissions": "0",
            "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD_ID} if not in_dm else {"1": user_id},
            "context": 1 if in_dm else 0,
            "attachment_size_limit": 8388608,
        }
        user = _user_json(user_id, f"user{user_id}")
        if in_dm:
            payload["user"] = user
        else:
            payload["guild_id"] = GUILD_ID
            payload["member"] = {
                "user": user,
                "roles": [],
                "joined_at": "2026-01-01T00:00:00.000000+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "0",
            }
        interaction = Interaction(interaction_id, token, user_id, payload)
        self.interactions[interaction_id] = interaction
        return interaction

    @staticmethod
    def _channel_json(channel_id: str, user_id: str, in_dm: bool) -> dict[str, Any]:
        """The partial channel an interaction carries, as Discord sends it."""
        if in_dm:
            return {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [_user_json(user_id, f"user{user_id}")],
            }
        return {
            "id": channel_id,
            "type": 0,
            "guild_id": GUILD_ID,
            "name": f"channel-{channel_id}",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "permissions": "0",
        }

    async def push(self, interaction: Interaction) -> Interaction:
        """Dispatch ``interaction`` on the current session (kept for RESUME if disconnected)."""
        assert self._current is not None, "nobody ever identified"
        await self._dispatch(self._current, "INTERACTION_CREATE", interaction.payload)
        return interaction

    async def click(
        self,
        message: Message,
        *,
        user: str,
        label: str | None = None,
        custom_id: str | None = None,
        **forged: Any,
    ) -> Interaction:
        """Click a button on ``message`` as ``user`` (by label, or with any ``custom_id``).

        ``forged`` may set ``channel_id``, ``message_id`` or ``application_id``.
        """
        if custom_id is None:
            assert label is not None
            custom_id = str(message.button(label)["custom_id"])
        interaction = self._interaction(
            kind=3,
            user_id=user,
            message=message,
            data={"custom_id": custom_id, "component_type": 2},
            **forged,
        )
        return await self.push(interaction)

    async def submit_modal(
        self, opened_by: Interaction, *, reason: str, user: str | None = None, **forged: Any
    ) -> Interaction:
        """Submit the modal the app answered ``opened_by`` with, ``reason`` typed in."""
        modal = opened_by.modal
        assert modal is not None, "no modal was opened"
        message = self._message_of(opened_by)
        components = _fill_inputs(modal.get("components") or [], reason)
        interaction = self._interaction(
            kind=5,
            user_id=opened_by.user_id if user is None else user,
            message=message,
            data={"custom_id": modal["custom_id"], "components": components},
            **forged,
        )
        return await self.push(interaction)

    def _message_of(self, interaction: Interaction) -> Message:
        raw = interaction.payload["message"]
        found = self.messages.get((str(raw["channel_id"]), str(raw["id"])))
        if found is not None:
            return found
        return Message(
            id=str(raw["id"]),
            channel_id=str(raw["channel_id"]),
            content=str(raw.get("content", "")),
            embeds=list(raw.get("embeds", [])),
            components=list(raw.get("components", [])),
            allowed_mentions=None,
        )


def _snowflakes_as_text(reference: Any) -> dict[str, Any] | None:
    """A message reference as Discord returns it: ids as strings."""
    if not isinstance(reference, dict):
        return None
    return {k: str(v) if k.endswith("_id") and v is not None else v for k, v in reference.items()}


def _fill_inputs(components: list[Any], value: str) -> list[Any]:
    """A modal's components as a submission carries them: each text input with ``value``."""
    filled: list[Any] = []
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("type") == 4:
            filled.append({"type": 4, "custom_id": component.get("custom_id"), "value": value})
        elif "component" in component:
            inner = _fill_inputs([component["component"]], value)
            filled.append({"type": component.get("type"), "component": inner[0] if inner else {}})
        else:
            filled.append(
                {
                    "type": component.get("type"),
                    "components": _fill_inputs(component.get("components") or [], value),
                }
            )
    return filled
