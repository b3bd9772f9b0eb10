"""A fake Slack on 127.0.0.1: Web API, signed interaction sender and Socket Mode websocket.

The real slack_sdk / slack-bolt code talks to it. It records every Web API call with the
moment it arrived, keeps the messages posted (and their edits), injects faults (429 with a
whole-second ``Retry-After``, 5xx, Slack errors) and sends clicks the way Slack does: a
signed form post to ``/slack/events`` (HTTP mode) or an envelope over the websocket (Socket
Mode), waiting for its acknowledgement.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import WSMsgType, web

TEAM_ID = "T0SIGNOFF"
BOT_USER_ID = "U0SIGNOFFBOT"
API_APP_ID = "A0SIGNOFF"
JSON_FIELDS = ("blocks", "attachments", "view")


@dataclass(frozen=True)
class Fault:
    """One injected failure: an HTTP status, optionally a Slack error and ``Retry-After``."""

    status: int = 200
    error: str | None = None
    retry_after: int | None = None


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    token: str | None
    at: float
    status: int
    error: str | None = None


@dataclass
class Message:
    """A message as the fake holds it; ``history`` keeps every rendering, the first one first."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [
            element
            for block in self.blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        ]

    def button(self, action_id: str) -> dict[str, Any]:
        """The button now shown, else the one an earlier rendering showed (a stale client)."""
        renderings = [self.blocks, *(r["blocks"] for r in reversed(self.history))]
        for blocks in renderings:
            for block in blocks:
                for button in block.get("elements", []) if block.get("type") == "actions" else []:
                    if button["action_id"] == action_id:
                        return dict(button)
        raise AssertionError(f"no {action_id} button on {self.channel}/{self.ts}")

    @property
    def all_text(self) -> str:
        return json.dumps({"text": self.text, "blocks": self.blocks}, ensure_ascii=False)


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str


class FakeSlack:
    """See the module docstring. ``start()`` binds 127.0.0.1 on a free port."""

    def __init__(self, *, bot_token: str, app_token: str, signing_secret: str) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: list[dict[str, Any]] = []
        self.archived: set[str] = set()
        self._faults: dict[str, list[Fault]] = defaultdict(list)
        self._faults_at: dict[tuple[str, int], Fault] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self._ts = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.acks: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.events: httpx.AsyncClient | None = None
        """How clicks reach the app in HTTP mode (set by the test harness)."""
        self.mode = "http"

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # -- fault injection ----------------------------------------------------------------

    def fail_next(self, method: str, fault: Fault, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get ``fault``."""
        self._faults[method].extend([fault] * times)

    def fail_at(self, method: str, nth: int, fault: Fault) -> None:
        """The ``nth`` call (1-based) of ``method`` gets ``fault``."""
        self._faults_at[(method, nth)] = fault

    # -- Web API ------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        for name in JSON_FIELDS:
            if isinstance(params.get(name), str):
                params[name] = json.loads(params[name])
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self._counts[method] += 1
        fault = self._faults_at.pop((method, self._counts[method]), None)
        if fault is None and self._faults[method]:
            fault = self._faults[method].pop(0)
        call = ApiCall(method, params, token, time.monotonic(), 200)
        self.calls.append(call)
        if fault is not None:
            call.status, call.error = fault.status, fault.error
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            if fault.status >= 500:
                return web.Response(status=fault.status, text="upstream trouble", headers=headers)
            return web.json_response(
                {"ok": False, "error": fault.error or "ratelimited"},
                status=fault.status,
                headers=headers,
            )
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return self._error(call, "invalid_auth")
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return self._error(call, "unknown_method")
        result = handler(params)
        if isinstance(result, str):
            return self._error(call, result)
        return web.json_response({"ok": True, **result})

    @staticmethod
    def _error(call: ApiCall, error: str) -> web.Response:
        call.error = error
        return web.json_response({"ok": False, "error": error})

    def _auth_test(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://signoff-test.slack.com/",
            "team": "signoff test",
            "user": "signoff",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": "B0SIGNOFF",
        }

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1700000000 + n}.{n:06d}"

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any] | str:
        channel = str(params.get("channel", ""))
        if not channel:
            return "channel_not_found"
        if channel in self.archived:
            return "is_archived"
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=str(params.get("text", "")),
            blocks=list(params.get("blocks") or []),
            thread_ts=params.get("thread_ts"),
        )
        message.history.append({"text": message.text, "blocks": message.blocks})
        self.messages[(channel, message.ts)] = message
        body = {"type": "message", "text": message.text, "blocks": message.blocks}
        return {"channel": channel, "ts": message.ts, "message": {**body, "ts": message.ts}}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any] | str:
        message = self.messages.get((str(params.get("channel")), str(params.get("ts"))))
        if message is None:
            return "message_not_found"
        message.text = str(params.get("text", ""))
        message.blocks = list(params.get("blocks") or [])
        message.history.append({"text": message.text, "blocks": message.blocks})
        return {"channel": message.channel, "ts": message.ts, "text": message.text}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self.ephemerals.append(
            Ephemeral(str(params.get("channel")), str(params.get("user")), str(params.get("text")))
        )
        return {"message_ts": self._next_ts()}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any] | str:
        if not params.get("trigger_id"):
            return "invalid_trigger_id"
        view = dict(params["view"])
        view["id"] = f"V{len(self.views) + 1:06d}"
        self.views.append(view)
        return {"view": view}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any] | str:
        users = str(params.get("users", ""))
        if not users or "," in users:
            return "user_not_found"
        return {"channel": {"id": "D" + users}}

    def _apps_connections_open(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/link"}

    # -- queries ------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    def posts_in(self, channel: str) -> list[Message]:
        """Top-level messages posted in ``channel``, oldest first."""
        return [m for m in self.messages.values() if m.channel == channel and not m.thread_ts]

    def ephemerals_for(self, user: str) -> list[Ephemeral]:
        return [e for e in self.ephemerals if e.user == user]

    # -- Socket Mode --------------------------------------------------------------------

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        if not request.remote or request.remote != "127.0.0.1":
            raise web.HTTPForbidden()
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                self.acks.append(data)
                waiter = self._acks.pop(str(data.get("envelope_id")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(data)
        finally:
            self._sockets.remove(socket)
        return socket

    async def drop_connections(self) -> None:
        """Close every Socket Mode connection from the server side, as Slack does at times."""
        for socket in list(self._sockets):
            await socket.close()

    @property
    def connected(self) -> int:
        return len([s for s in self._sockets if not s.closed])

    async def push(self, payload: dict[str, Any], *, within: float = 5.0) -> dict[str, Any]:
        """Send an ``interactive`` envelope on the newest connection; return its ack."""
        live = [s for s in self._sockets if not s.closed]
        assert live, "no Socket Mode connection"
        envelope_id = str(uuid.uuid4())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiter
        envelope = {
            "envelope_id": envelope_id,
            "type": "interactive",
            "accepts_response_payload": True,
            "payload": payload,
        }
        await live[-1].send_str(json.dumps(envelope))
        return await asyncio.wait_for(waiter, within)

    # -- interactions -------------------------------------------------------------------

    def signed_headers(
        self, body: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        key = (self.signing_secret if secret is None else secret).encode()
        digest = hmac.new(key, f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        return {
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded",
        }

    async def post_events(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST raw bytes to the app's ``/slack/events`` (HTTP mode)."""
        assert self.events is not None, "the harness did not connect HTTP events"
        return await self.events.post("/slack/events", content=body, headers=headers)

    async def deliver(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver an interaction payload the way the app's mode expects; return the ack.

        HTTP mode: ``{"status": ..., "body": ...}`` of the signed POST; Socket Mode: the
        ack envelope the app sent back.
        """
        if self.mode == "socket":
            return await self.push(payload)
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await self.post_events(body, self.signed_headers(body))
        return {"status": response.status_code, "body": response.text}

    def click_payload(
        self,
        message: Message,
        *,
        user: str,
        action_id: str,
        team: str = TEAM_ID,
        value: str | None = None,
        channel: str | None = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        """A ``block_actions`` payload for a click on ``message`` (fields may be forged)."""
        button = message.button(action_id)
        channel = message.channel if channel is None else channel
        ts = message.ts if ts is None else ts
        return {
            "type": "block_actions",
            "team": {"id": team, "domain": "signoff-test"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
            "api_app_id": API_APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._ts)}.trigger",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "channel": {"id": channel, "name": "ops"},
            "message": {
                "type": "message",
                "ts": ts,
                "text": message.text,
                "blocks": message.blocks,
            },
            "response_url": f"http://127.0.0.1:{self.port}/response",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "signoff_actions",
                    "value": button["value"] if value is None else value,
                    "text": button["text"],
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    async def click(
        self, message: Message, *, user: str, action_id: str, **forged: Any
    ) -> dict[str, Any]:
        """Click a button on ``message`` as ``user``; returns the acknowledgement."""
        payload = self.click_payload(message, user=user, action_id=action_id, **forged)
        return await self.deliver(payload)

    async def choose(
        self, message: Message, *, user: str, action_id: str, option: str
    ) -> dict[str, Any]:
        """Pick the option whose text is ``option`` in the select ``action_id`` on
        ``message``, as ``user``; returns the acknowledgement."""
        select = message.button(action_id)
        picked = next(o for o in select["options"] if o["text"]["text"] == option)
        # The envelope of any click on the card; its action is replaced by the choice.
        payload = self.click_payload(message, user=user, action_id="signoff_approve")
        payload["actions"] = [
            {
                "type": "static_select",
                "action_id": action_id,
                "block_id": "signoff_actions",
                "selected_option": picked,
                "placeholder": select.get("placeholder"),
                "action_ts": f"{time.time():.6f}",
            }
        ]
        return await self.deliver(payload)

    async def submit_view(
        self, view: dict[str, Any], *, user: str, reason: str | None, team: str = TEAM_ID
    ) -> dict[str, Any]:
        """Submit a modal the app opened, with ``reason`` typed into it."""
        payload = {
            "type": "view_submission",
            "team": {"id": team, "domain": "signoff-test"},
            "user": {"id": user, "username": user.lower(), "team_id": team},
            "api_app_id": API_APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._ts)}.trigger",
            "view": {
                **view,
                "team_id": team,
                "state": {
                    "values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
                },
                "hash": "1.abc",
            },
        }
        return await self.deliver(payload)
