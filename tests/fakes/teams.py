"""A fake Microsoft Teams on 127.0.0.1: the Bot Connector and its identity endpoints.

The real Teams SDK for Python (``microsoft-teams-apps``) talks to it, both ways:

- **Inbound** (Teams -> bot). Teams signs every activity it posts to the bot's messaging
  endpoint with an RS256 JWT (``iss`` ``https://api.botframework.com``, ``aud`` the app id, a
  ``serviceurl`` claim equal to the activity's ``serviceUrl``). The fake holds a local RSA key
  and serves its JWKS (``endorsements: ["msteams"]``) where the SDK looks for it:
  ``GET /v1/.well-known/keys`` (derived by the SDK from ``openid_metadata_url``,
  ``GET /v1/.well-known/openidconfiguration``, which it never fetches; served anyway) and
  ``GET /{tenant}/discovery/v2.0/keys`` (the Entra path, taken for tokens whose issuer starts
  with ``login_endpoint``). The fake does not call the bot: tests build activities with
  :meth:`FakeTeams.install_activity`, :meth:`FakeTeams.channel_install_activity` and
  :meth:`FakeTeams.invoke_activity`, sign them with :meth:`FakeTeams.headers_for` (or forge
  them with :meth:`FakeTeams.sign_inbound`'s knobs) and post them to the app themselves.
- **Outbound** (bot -> Teams). ``POST /{tenant}/oauth2/v2.0/token`` (client credentials; the
  access token is an RS256 JWT, counted in :attr:`FakeTeams.token_requests`) and the Bot
  Connector REST API under :attr:`FakeTeams.service_url` (``{base}/teams/``; any first path
  segment works, see :meth:`FakeTeams.service_url_for`):
  ``POST /v3/conversations`` (a 1:1 chat, only with a user the app is installed for),
  ``POST /v3/conversations/{id}/activities`` (send; a reply when the id carries
  ``;messageid={root}`` or the body a ``replyToId``), ``POST .../activities/{activityId}``
  (reply), ``PUT .../activities/{activityId}`` (edit), ``DELETE .../activities/{activityId}``.
  Every call needs a Bearer token this fake issued and that has not expired (401 otherwise).
  Errors have the Bot Framework shape ``{"error": {"code", "message"}}`` with the codes Teams
  documents (``ConversationNotFound``, ``BotNotInConversationRoster``, ``Throttled``,
  ``MessageSizeTooBig`` ...).

It records every call and every posted activity (:class:`Message`, with its edits), injects
faults (:meth:`FakeTeams.fail_next`; a 429 carries ``Retry-After``) and, when asked, enforces
Teams' per-bot, per-conversation rate limits for send and create conversation on real
monotonic time (7 per 1 s, 8 per 2 s, 60 per 30 s, 1800 per hour), answering 429 with
``Retry-After``.

The server runs **in its own thread with its own event loop**: the SDK's token validator
fetches the JWKS with PyJWT's synchronous ``PyJWKClient`` (urllib) from inside the app's event
loop, so a fake served by that same loop would deadlock. State is guarded by a lock.

Usage::

    with FakeTeams() as fake:
        app = App(client_id=fake.app_id, token=..., tenant_id=fake.tenant_id,
                  cloud=with_overrides(PUBLIC, openid_metadata_url=fake.openid_metadata_url,
                                       token_issuer=fake.issuer,
                                       login_endpoint=fake.login_endpoint),
                  service_url=fake.service_url, ...)
        activity = fake.install_activity(USER_AAD_ID)
        await client.post("/teams/messages", json=activity, headers=fake.headers_for(activity))
        ...
        [post] = fake.posts_in(activity["conversation"]["id"])
        click = fake.invoke_activity(post, user_aad_id=USER_AAD_ID, verb="approve",
                                     data={"action": "approve"})
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import itertools
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_APP_ID = "5160f00d-7ea5-4c3b-9d2e-000000000001"
DEFAULT_APP_PASSWORD = "fake-teams-client-secret"
DEFAULT_TENANT_ID = "5160f00d-7ea5-4c3b-9d2e-0000000000aa"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_TENANT = "botframework.com"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"

RATE_LIMITS: tuple[tuple[float, int], ...] = ((1.0, 7), (2.0, 8), (30.0, 60), (3600.0, 1800))
"""Teams' limits per bot per conversation for send and create conversation: (seconds, count)."""

Operation = Literal["send", "reply", "edit", "delete", "create_conversation", "token"]
OPERATIONS: frozenset[str] = frozenset(
    {"send", "reply", "edit", "delete", "create_conversation", "token"}
)

ERROR_CODES: dict[int, tuple[str, str]] = {
    400: ("BadSyntax", "Bad request."),
    401: ("BotNotRegistered", "No registration found for this bot."),
    403: ("BotNotInConversationRoster", "The bot is not part of the conversation roster."),
    404: ("ConversationNotFound", "Conversation not found."),
    412: ("PreconditionFailed", "Precondition failed, please try again."),
    413: ("MessageSizeTooBig", "Message size too large."),
    429: ("Throttled", "Too many requests."),
    500: ("ServiceError", "Internal server error."),
    502: ("ServiceError", "Bad gateway."),
    503: ("ServiceUnavailable", "Service unavailable."),
    504: ("GatewayTimeout", "Gateway timeout."),
}
"""Default Bot Framework error codes per status, from Teams' list of status codes for bot
APIs (``BotNotInConversationRoster`` is also what Teams answers when the app is not installed
for the user a 1:1 chat is created with)."""


# -- keys -----------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with a key id; ``jwk`` is the public half as Teams publishes it."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
            "endorsements": ["msteams"],
        }


_KEYS: dict[str, SigningKey] = {}
_KEYS_LOCK = threading.Lock()


def _key(name: str) -> SigningKey:
    """One key per name per process: RSA generation is slow, and tests start many fakes."""
    with _KEYS_LOCK:
        if name not in _KEYS:
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _KEYS[name] = SigningKey(f"fake-teams-{name}-{uuid.uuid4().hex[:12]}", private_key)
        return _KEYS[name]


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected failure: an HTTP status, optionally ``Retry-After`` and a body (a dict is
    sent as JSON, a string as text; ``None`` gives the platform's usual error body)."""

    status: int
    retry_after: float | None = None
    body: dict[str, Any] | str | None = None


@dataclass
class ApiCall:
    """One request to the Bot Connector or the token endpoint, as the fake answered it."""

    operation: str
    method: str
    path: str
    at: float
    """``time.monotonic()`` when it arrived."""
    body: dict[str, Any] | None = None
    conversation_id: str | None = None
    """The conversation id without any ``;messageid=`` suffix."""
    activity_id: str | None = None
    region: str | None = None
    """The service URL's first path segment the call came through (``teams`` by default)."""
    status: int = 200
    error: str | None = None


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint."""

    tenant: str
    client_id: str
    scope: str
    grant_type: str
    at: float
    status: int


@dataclass
class Message:
    """An activity the bot posted. ``activity`` is the current JSON (with its ``id``);
    ``history`` keeps the earlier renderings, the first one first."""

    conversation_id: str
    """Without any ``;messageid=`` suffix; ``posted_to`` is the id as the bot wrote it."""
    activity_id: str
    activity: dict[str, Any]
    reply_to_id: str | None = None
    posted_to: str = ""
    region: str = "teams"
    at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    @property
    def attachments(self) -> list[dict[str, Any]]:
        return list(self.activity.get("attachments") or [])

    @property
    def card(self) -> dict[str, Any] | None:
        """The Adaptive Card content of the first attachment, if it is one."""
        return _first_card(self.activity)

    @property
    def cards(self) -> list[dict[str, Any] | None]:
        """Every rendering's card, the first one first, the current one last."""
        return [_first_card(activity) for activity in [*self.history, self.activity]]

    @property
    def text(self) -> str:
        return str(self.activity.get("text") or "")

    @property
    def edits(self) -> int:
        return len(self.history)

    @property
    def is_reply(self) -> bool:
        return self.reply_to_id is not None


@dataclass
class User:
    """A Teams user as the fake knows them: both ids, and whether the app is installed."""

    aad_object_id: str
    user_id: str
    """The ``29:`` id Teams uses for this user with this bot."""
    name: str
    tenant_id: str
    installed: bool = False
    conversation_id: str | None = None


@dataclass
class Conversation:
    id: str
    conversation_type: Literal["personal", "channel"]
    tenant_id: str
    user_aad_id: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    team_name: str | None = None
    channel_name: str | None = None
    bot_member: bool = True


def _first_card(activity: dict[str, Any]) -> dict[str, Any] | None:
    attachments = activity.get("attachments") or []
    if not attachments:
        return None
    first = attachments[0]
    if first.get("contentType") != ADAPTIVE_CARD:
        return None
    content = first.get("content")
    if isinstance(content, str):
        content = json.loads(content)
    return content if isinstance(content, dict) else None


def _as_card(source: Message | dict[str, Any] | None) -> dict[str, Any] | None:
    if source is None:
        return None
    if isinstance(source, Message):
        return source.card
    if "attachments" in source:
        return _first_card(source)
    return source


# -- card reading ---------------------------------------------------------------------------

_NOT_SHOWN = frozenset(
    {"data", "refresh", "selectAction", "msteams", "metadata", "authentication", "fallback"}
)


def _card_lines(node: Any, lines: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _card_lines(item, lines)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("TextBlock", "TextRun") and node.get("text") is not None:
        lines.append(str(node["text"]))
    elif kind == "RichTextBlock":
        for inline in node.get("inlines") or []:
            if isinstance(inline, str):
                lines.append(inline)
            elif isinstance(inline, dict) and inline.get("text") is not None:
                lines.append(str(inline["text"]))
        return
    elif kind == "FactSet":
        for fact in node.get("facts") or []:
            lines.append(f"{fact.get('title', '')} {fact.get('value', '')}".strip())
        return
    elif isinstance(kind, str) and kind.startswith("Input.") and node.get("label"):
        lines.append(str(node["label"]))
    for key, value in node.items():
        if key in _NOT_SHOWN or not isinstance(value, list | dict):
            continue
        if key == "actions" or (key == "card" and kind == "Action.ShowCard"):
            _card_lines_in_actions(value, lines)
        else:
            _card_lines(value, lines)


def _card_lines_in_actions(node: Any, lines: list[str]) -> None:
    """Actions show titles (not text); only an Action.ShowCard's card holds more text."""
    if isinstance(node, list):
        for item in node:
            _card_lines_in_actions(item, lines)
    elif isinstance(node, dict):
        if node.get("type") == "AdaptiveCard":
            _card_lines(node, lines)
        elif node.get("type") == "Action.ShowCard" and isinstance(node.get("card"), dict):
            _card_lines(node["card"], lines)


def _execute_actions(node: Any, found: list[dict[str, Any]]) -> None:
    if isinstance(node, list):
        for item in node:
            _execute_actions(item, found)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "Action.Execute":
        found.append(
            {
                "title": node.get("title"),
                "verb": node.get("verb"),
                "data": dict(node.get("data") or {}),
                "id": node.get("id"),
            }
        )
    for key, value in node.items():
        if key not in ("data", "refresh") and isinstance(value, list | dict):
            _execute_actions(value, found)


def card_text(source: Message | dict[str, Any] | None) -> str:
    """All visible text of an Adaptive Card (a :class:`Message`, an activity or the card):
    TextBlock and TextRun text, FactSet titles and values, input labels, through containers,
    columns, tables and Action.ShowCard cards; one line each."""
    card = _as_card(source)
    lines: list[str] = []
    if card is not None:
        _card_lines(card, lines)
    return "\n".join(lines)


def card_actions(source: Message | dict[str, Any] | None) -> list[dict[str, Any]]:
    """The card's Action.Execute actions (``title``, ``verb``, ``data``, ``id``), including those
    in ActionSets, select actions and Action.ShowCard cards; not the automatic ``refresh``."""
    card = _as_card(source)
    found: list[dict[str, Any]] = []
    if card is not None:
        _execute_actions(card, found)
    return found


# -- the fake -------------------------------------------------------------------------------


def _json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def _connector_error(status: int, code: str | None = None, message: str | None = None) -> Any:
    default_code, default_message = ERROR_CODES.get(status, ("Error", "Request failed."))
    return {"error": {"code": code or default_code, "message": message or default_message}}


def _split_thread(conversation_id: str) -> tuple[str, str | None]:
    """``19:x@thread.tacv2;messageid=123`` -> (``19:x@thread.tacv2``, ``123``)."""
    base, _, rest = conversation_id.partition(";")
    root = None
    for part in rest.split(";") if rest else []:
        key, _, value = part.partition("=")
        if key.strip().lower() == "messageid" and value:
            root = value
    return base, root


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stable(prefix: str, seed: str, length: int = 40) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:length]


class FakeTeams:
    """See the module docstring. ``start()`` (or ``with``) binds 127.0.0.1 on a free port."""

    def __init__(
        self,
        *,
        app_id: str = DEFAULT_APP_ID,
        app_password: str = DEFAULT_APP_PASSWORD,
        tenant_id: str = DEFAULT_TENANT_ID,
        bot_name: str = "signoff",
        token_lifetime: int = 3599,
        enforce_rate_limits: bool = False,
        max_message_bytes: int | None = None,
    ) -> None:
        self.app_id = app_id
        self.app_password = app_password
        self.tenant_id = tenant_id
        self.bot_name = bot_name
        self.token_lifetime = token_lifetime
        self.enforce_rate_limits = enforce_rate_limits
        """While set, send/reply/create conversation run Teams' per-conversation limits."""
        self.max_message_bytes = max_message_bytes
        """With a value, an activity body longer than this (UTF-8 bytes) gets 413."""
        self.known_key = _key("known")
        self.unknown_key = _key("unknown")
        self._lock = threading.Lock()
        self._messages: dict[tuple[str, str], Message] = {}
        self._calls: list[ApiCall] = []
        self._token_calls: list[TokenRequest] = []
        self._issued: dict[str, float] = {}
        self._faults: dict[str, list[Fault]] = {name: [] for name in OPERATIONS}
        self._users_by_aad: dict[str, User] = {}
        self._users_by_id: dict[str, User] = {}
        self._conversations: dict[str, Conversation] = {}
        self._send_times: dict[str, list[float]] = {}
        self._throttled = 0
        self._key_requests: list[str] = []
        self._ids = itertools.count(int(time.time() * 1000))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._startup_error: BaseException | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeTeams:
        if self._thread is not None:
            raise RuntimeError("FakeTeams is already running")
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-teams", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeTeams did not start within 10 s")
        if self._startup_error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError("FakeTeams failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeTeams:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:
            self._startup_error = error
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._openid_configuration)
        app.router.add_get("/v1/.well-known/keys", self._jwks)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._jwks)
        app.router.add_get(
            "/{tenant}/v2.0/.well-known/openid-configuration", self._entra_configuration
        )
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        conversations = "/{region}/v3/conversations"
        activities = conversations + "/{conversation_id}/activities"
        app.router.add_post(conversations, self._create_conversation)
        app.router.add_post(activities, self._post_activity)
        app.router.add_post(activities + "/{activity_id}", self._post_activity)
        app.router.add_put(activities + "/{activity_id}", self._edit_activity)
        app.router.add_delete(activities + "/{activity_id}", self._delete_activity)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    # -- addresses ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openid_metadata_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/keys"

    @property
    def login_endpoint(self) -> str:
        """For ``cloud.login_endpoint``: keeps the validator's Entra path local too."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def service_url(self) -> str:
        """The Bot Connector base activities carry, with a trailing slash as Teams sends it."""
        return self.service_url_for("teams")

    def service_url_for(self, region: str) -> str:
        """Another service URL of the same connector (Teams' ``serviceUrl`` can change);
        each call and message records the ``region`` it came through."""
        return f"{self.base_url}/{region}/"

    @property
    def issuer(self) -> str:
        return BOT_FRAMEWORK_ISSUER

    @property
    def bot_id(self) -> str:
        """The bot's id in activities (``recipient.id``)."""
        return f"28:{self.app_id}"

    # -- recorded state -----------------------------------------------------------------

    @property
    def messages(self) -> dict[tuple[str, str], Message]:
        """Every posted activity by (conversation id without ``;messageid=``, activity id)."""
        with self._lock:
            return dict(self._messages)

    @property
    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def calls_of(self, operation: str) -> list[ApiCall]:
        with self._lock:
            return [call for call in self._calls if call.operation == operation]

    @property
    def token_calls(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_calls)

    @property
    def token_requests(self) -> int:
        """How many requests reached the token endpoint (including refused ones)."""
        with self._lock:
            return len(self._token_calls)

    @property
    def key_requests(self) -> list[str]:
        """Paths of the JWKS requests the bot made (the SDK caches the set for 300 s)."""
        with self._lock:
            return list(self._key_requests)

    @property
    def throttled(self) -> int:
        """How many 429s the rate limiter (not :meth:`fail_next`) answered."""
        with self._lock:
            return self._throttled

    @property
    def send_times(self) -> dict[str, list[float]]:
        """``time.monotonic()`` of every accepted send, reply and create, per conversation."""
        with self._lock:
            return {key: list(times) for key, times in self._send_times.items()}

    def posts_in(self, conversation_id: str) -> list[Message]:
        """Top-level messages in a conversation (not thread replies), oldest first."""
        base, _ = _split_thread(conversation_id)
        with self._lock:
            return [
                m
                for m in self._messages.values()
                if m.conversation_id == base and m.reply_to_id is None
            ]

    def replies_to(self, conversation_id: str, activity_id: str) -> list[Message]:
        """Messages posted as replies to ``activity_id``, oldest first."""
        base, _ = _split_thread(conversation_id)
        with self._lock:
            return [
                m
                for m in self._messages.values()
                if m.conversation_id == base and m.reply_to_id == activity_id
            ]

    def message(self, conversation_id: str, activity_id: str) -> Message:
        base, _ = _split_thread(conversation_id)
        with self._lock:
            found = self._messages.get((base, activity_id))
        if found is None:
            raise AssertionError(f"no message {activity_id} in {base}")
        return found

    card_text = staticmethod(card_text)
    card_actions = staticmethod(card_actions)

    def user(self, user: str) -> User:
        """A known user by AAD object id or ``29:`` id."""
        with self._lock:
            found = self._users_by_aad.get(user) or self._users_by_id.get(user)
        if found is None:
            raise KeyError(user)
        return found

    def conversation(self, conversation_id: str) -> Conversation:
        base, _ = _split_thread(conversation_id)
        with self._lock:
            return self._conversations[base]

    # -- world setup --------------------------------------------------------------------

    def _user_locked(
        self, user: str, *, user_id: str | None, name: str | None, tenant_id: str | None
    ) -> User:
        known = self._users_by_aad.get(user) or self._users_by_id.get(user)
        if known is None:
            if user.startswith("29:"):
                aad = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-teams-user:{user}"))
                teams_id = user
            else:
                aad = user
                teams_id = user_id or _stable("29:1", f"{self.app_id}:{aad}")
            known = User(
                aad_object_id=aad,
                user_id=teams_id,
                name=name or "Test User",
                tenant_id=tenant_id or self.tenant_id,
            )
            self._users_by_aad[known.aad_object_id] = known
            self._users_by_id[known.user_id] = known
        elif name:
            known.name = name
        return known

    def install_for(
        self,
        user: str,
        *,
        user_id: str | None = None,
        name: str | None = None,
        tenant_id: str | None = None,
        conversation_id: str | None = None,
    ) -> str:
        """Install the app for a user (by AAD object id or ``29:`` id); returns the personal
        conversation id (the same one each time, as in Teams)."""
        with self._lock:
            known = self._user_locked(user, user_id=user_id, name=name, tenant_id=tenant_id)
            known.installed = True
            if conversation_id is not None:
                known.conversation_id = conversation_id
            elif known.conversation_id is None:
                known.conversation_id = _stable("a:1", f"{self.app_id}:{known.aad_object_id}", 60)
            self._conversations[known.conversation_id] = Conversation(
                id=known.conversation_id,
                conversation_type="personal",
                tenant_id=known.tenant_id,
                user_aad_id=known.aad_object_id,
            )
            return known.conversation_id

    def uninstall_for(self, user: str) -> None:
        """The user removed (or blocked) the app: their chat answers 403 from now on."""
        with self._lock:
            known = self._users_by_aad.get(user) or self._users_by_id.get(user)
            if known is None:
                raise KeyError(user)
            known.installed = False
            if known.conversation_id in self._conversations:
                self._conversations[known.conversation_id].bot_member = False

    def add_channel(
        self,
        team_id: str,
        channel_id: str,
        *,
        tenant_id: str | None = None,
        team_name: str = "Approvers",
        channel_name: str = "General",
    ) -> str:
        """Make a channel the bot is installed in (ids like ``19:...@thread.tacv2``); returns
        its conversation id (the channel id)."""
        with self._lock:
            self._conversations[channel_id] = Conversation(
                id=channel_id,
                conversation_type="channel",
                tenant_id=tenant_id or self.tenant_id,
                team_id=team_id,
                channel_id=channel_id,
                team_name=team_name,
                channel_name=channel_name,
            )
        return channel_id

    def remove_channel(self, channel_id: str) -> None:
        """The app was removed from the team: posts there answer 403 from now on."""
        with self._lock:
            self._conversations[channel_id].bot_member = False

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (401), as after its expiry."""
        with self._lock:
            for token in self._issued:
                self._issued[token] = 0.0

    # -- fault injection ----------------------------------------------------------------

    def fail_next(
        self,
        operation: Operation | str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | str | None = None,
    ) -> None:
        """The next ``times`` calls of ``operation`` (``send``, ``reply``, ``edit``, ``delete``,
        ``create_conversation``, ``token``) get ``status``; ``retry_after`` adds the header."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {sorted(OPERATIONS)}")
        with self._lock:
            self._faults[operation].extend([Fault(status, retry_after, body)] * times)

    def _take_fault(self, call: ApiCall) -> web.Response | None:
        with self._lock:
            queue = self._faults[call.operation]
            fault = queue.pop(0) if queue else None
        if fault is None:
            return None
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(max(0, math.ceil(fault.retry_after)))
        call.status, call.error = fault.status, "injected"
        if isinstance(fault.body, str):
            return web.Response(text=fault.body, status=fault.status, headers=headers)
        body = fault.body
        if body is None and call.operation == "token":
            body = {
                "error": "temporarily_unavailable" if fault.status >= 429 else "invalid_request",
                "error_description": f"Injected failure ({fault.status}).",
            }
        elif body is None:
            body = _connector_error(fault.status)
        return _json_response(body, fault.status, headers)

    # -- identity endpoints -------------------------------------------------------------

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "issuer": BOT_FRAMEWORK_ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": self.jwks_url,
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _entra_configuration(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        return _json_response(
            {
                "issuer": f"{self.login_endpoint}/{tenant}/v2.0",
                "token_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        with self._lock:
            self._key_requests.append(request.path)
        return _json_response({"keys": [self.known_key.jwk]})

    def sign_inbound(
        self,
        service_url: str | None = None,
        *,
        aud: str | None = None,
        iss: str | None = None,
        expires_in: int = 300,
        not_before_offset: int = 0,
        key: Literal["known", "unknown", "forged"] = "known",
        include_serviceurl: bool = True,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """The Bot Connector's JWT for an inbound activity. ``key="unknown"`` signs with a key
        the JWKS does not list, ``"forged"`` with that key under the known key's ``kid``;
        ``expires_in`` may be negative, ``not_before_offset`` pushes ``nbf`` into the future."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer if iss is None else iss,
            "aud": self.app_id if aud is None else aud,
            "iat": now,
            "nbf": now + not_before_offset,
            "exp": now + expires_in,
        }
        if include_serviceurl:
            claims["serviceurl"] = self.service_url if service_url is None else service_url
        claims.update(extra_claims or {})
        signer = self.known_key if key == "known" else self.unknown_key
        kid = self.known_key.kid if key == "forged" else signer.kid
        return jwt.encode(
            claims, signer.private_key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"}
        )

    def headers_for(self, activity: dict[str, Any], **sign_kwargs: Any) -> dict[str, str]:
        """Headers for posting ``activity`` to the bot, signed for its ``serviceUrl``."""
        sign_kwargs.setdefault("service_url", activity.get("serviceUrl") or self.service_url)
        return {
            "Authorization": f"Bearer {self.sign_inbound(**sign_kwargs)}",
            "Content-Type": "application/json",
        }

    async def _token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        grant_type = fields.get("grant_type", "")
        client_id = fields.get("client_id", "")
        scope = fields.get("scope", "")
        record = ApiCall("token", request.method, request.path, time.monotonic())
        response = self._take_fault(record) or self._issue_token(tenant, fields)
        with self._lock:
            self._calls.append(record)
            self._token_calls.append(
                TokenRequest(tenant, client_id, scope, grant_type, record.at, response.status)
            )
        record.status = response.status
        return response

    def _issue_token(self, tenant: str, fields: dict[str, str]) -> web.Response:
        def refuse(status: int, error: str, code: int, description: str) -> web.Response:
            return _json_response(
                {
                    "error": error,
                    "error_description": f"AADSTS{code}: {description}",
                    "error_codes": [code],
                    "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                    "trace_id": str(uuid.uuid4()),
                    "correlation_id": str(uuid.uuid4()),
                },
                status,
            )

        if fields.get("grant_type") != "client_credentials":
            return refuse(400, "unsupported_grant_type", 70003, "The grant type is not supported.")
        if fields.get("client_id") != self.app_id:
            return refuse(401, "invalid_client", 700016, "Application not found in the tenant.")
        if fields.get("client_secret") != self.app_password:
            return refuse(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if tenant not in (self.tenant_id, BOT_FRAMEWORK_TENANT):
            return refuse(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        scope = fields.get("scope", "")
        if not scope.endswith("/.default"):
            return refuse(
                400, "invalid_scope", 1002012, "The provided value for scope is not valid."
            )
        now = int(time.time())
        expires = now + self.token_lifetime
        claims = {
            "aud": scope.removesuffix("/.default"),
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": expires,
            "appid": self.app_id,
            "appidacr": "1",
            "idtyp": "app",
            "tid": self.tenant_id if tenant == BOT_FRAMEWORK_TENANT else tenant,
            "sub": self.app_id,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims,
            self.known_key.private_key,
            algorithm="RS256",
            headers={"kid": self.known_key.kid, "typ": "JWT"},
        )
        with self._lock:
            self._issued[token] = float(expires)
        return _json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            }
        )

    # -- Bot Connector ------------------------------------------------------------------

    async def _begin(
        self, operation: str, request: web.Request, *, conversation_id: str | None = None
    ) -> tuple[ApiCall, web.Response | None]:
        """Record the call, then check its token and injected faults; a response refuses it."""
        body: dict[str, Any] | None = None
        bad_body = False
        if request.body_exists:
            raw = await request.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                bad_body = True
            else:
                body = parsed if isinstance(parsed, dict) else None
                bad_body = body is None
        call = ApiCall(
            operation=operation,
            method=request.method,
            path=request.path,
            at=time.monotonic(),
            body=body,
            conversation_id=conversation_id,
            activity_id=request.match_info.get("activity_id"),
            region=request.match_info.get("region"),
        )
        with self._lock:
            self._calls.append(call)
        refused = self._check_token(request, call) or self._take_fault(call)
        if refused is None and bad_body:
            refused = self._refuse(call, 400, message="The request body is not a JSON object.")
        if (
            refused is None
            and self.max_message_bytes is not None
            and body is not None
            and len(json.dumps(body).encode()) > self.max_message_bytes
        ):
            refused = self._refuse(call, 413)
        return call, refused

    def _check_token(self, request: web.Request, call: ApiCall) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        with self._lock:
            expires = self._issued.get(token) if token else None
        if expires is not None and expires > time.time():
            return None
        call.status, call.error = 401, "unauthorized"
        return _json_response({"message": "Authorization has been denied for this request."}, 401)

    @staticmethod
    def _refuse(
        call: ApiCall,
        status: int,
        code: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body = _connector_error(status, code, message)
        call.status, call.error = status, body["error"]["code"]
        return _json_response(body, status, headers)

    def _member_problem_locked(self, call: ApiCall, base: str) -> web.Response | None:
        conversation = self._conversations.get(base)
        if conversation is None:
            return self._refuse(call, 404)
        if not conversation.bot_member:
            return self._refuse(call, 403)
        return None

    def _throttle_locked(self, call: ApiCall, key: str, now: float) -> web.Response | None:
        """Teams' per-conversation limits: refuse when any window is already full."""
        if not self.enforce_rate_limits:
            return None
        times = self._send_times.get(key, [])
        wait = 0.0
        for window, limit in RATE_LIMITS:
            in_window = len(times) - bisect.bisect_right(times, now - window)
            if in_window >= limit:
                wait = max(wait, times[len(times) - limit] + window - now)
        if wait <= 0:
            return None
        self._throttled += 1
        retry_after = str(max(1, math.ceil(wait)))
        return self._refuse(call, 429, headers={"Retry-After": retry_after})

    def _store_locked(
        self,
        call: ApiCall,
        base: str,
        posted_to: str,
        body: dict[str, Any],
        reply_to_id: str | None,
    ) -> Message:
        activity_id = str(next(self._ids))
        activity = {**body, "id": activity_id}
        if reply_to_id is not None:
            activity.setdefault("replyToId", reply_to_id)
        message = Message(
            conversation_id=base,
            activity_id=activity_id,
            activity=activity,
            reply_to_id=reply_to_id,
            posted_to=posted_to,
            region=call.region or "",
            at=call.at,
        )
        self._messages[(base, activity_id)] = message
        self._send_times.setdefault(base, []).append(call.at)
        call.activity_id = activity_id
        return message

    async def _post_activity(self, request: web.Request) -> web.Response:
        posted_to = request.match_info["conversation_id"]
        base, thread_root = _split_thread(posted_to)
        url_target = request.match_info.get("activity_id")
        # Peek at the body for replyToId: it decides the operation's name before any check.
        peek: dict[str, Any] = {}
        if request.body_exists:
            try:
                parsed = json.loads(await request.read())
            except ValueError:
                parsed = None
            peek = parsed if isinstance(parsed, dict) else {}
        body_target = peek.get("replyToId")
        target = url_target or thread_root
        reply_to_id = target or (str(body_target) if body_target else None)
        operation = "reply" if reply_to_id else "send"
        call, refused = await self._begin(operation, request, conversation_id=base)
        if refused is not None:
            return refused
        assert call.body is not None
        with self._lock:
            problem = self._member_problem_locked(call, base)
            if problem is None and target is not None and (base, target) not in self._messages:
                problem = self._refuse(
                    call, 404, "ActivityNotFound", "The activity to reply to was not found."
                )
            if problem is None:
                problem = self._throttle_locked(call, base, call.at)
            if problem is not None:
                return problem
            message = self._store_locked(call, base, posted_to, call.body, reply_to_id)
        return _json_response({"id": message.activity_id}, 201)

    async def _edit_activity(self, request: web.Request) -> web.Response:
        base, _ = _split_thread(request.match_info["conversation_id"])
        activity_id = request.match_info["activity_id"]
        call, refused = await self._begin("edit", request, conversation_id=base)
        if refused is not None:
            return refused
        assert call.body is not None
        with self._lock:
            problem = self._member_problem_locked(call, base)
            message = self._messages.get((base, activity_id))
            if problem is None and (message is None or message.deleted):
                problem = self._refuse(call, 404, "ActivityNotFound", "Activity not found.")
            if problem is not None:
                return problem
            assert message is not None
            updated = {**call.body, "id": activity_id}
            if message.reply_to_id is not None:
                updated.setdefault("replyToId", message.reply_to_id)
            message.history.append(message.activity)
            message.activity = updated
        return _json_response({"id": activity_id})

    async def _delete_activity(self, request: web.Request) -> web.Response:
        base, _ = _split_thread(request.match_info["conversation_id"])
        activity_id = request.match_info["activity_id"]
        call, refused = await self._begin("delete", request, conversation_id=base)
        if refused is not None:
            return refused
        with self._lock:
            problem = self._member_problem_locked(call, base)
            message = self._messages.get((base, activity_id))
            if problem is None and (message is None or message.deleted):
                problem = self._refuse(call, 404, "ActivityNotFound", "Activity not found.")
            if problem is not None:
                return problem
            assert message is not None
            message.deleted = True
        return web.Response(status=200)

    async def _create_conversation(self, request: web.Request) -> web.Response:
        call, refused = await self._begin("create_conversation", request)
        if refused is not None:
            return refused
        body = call.body or {}
        members = body.get("members") or []
        channel_data = body.get("channelData") or {}
        tenant = body.get("tenantId") or (channel_data.get("tenant") or {}).get("id")
        if body.get("isGroup") or len(members) != 1 or not isinstance(members[0], dict):
            return self._refuse(
                call, 400, "BadArgument", "A bot can only create a 1:1 conversation with one user."
            )
        if not tenant:
            return self._refuse(call, 400, "BadArgument", "Tenant id is required.")
        member = members[0]
        with self._lock:
            user = None
            for key in (member.get("id"), member.get("aadObjectId")):
                if key:
                    user = self._users_by_id.get(key) or self._users_by_aad.get(key)
                if user is not None:
                    break
            if user is None or not user.installed or user.tenant_id != tenant:
                return self._refuse(call, 403)
            assert user.conversation_id is not None
            conversation_id = user.conversation_id
            call.conversation_id = conversation_id
            throttled = self._throttle_locked(call, conversation_id, call.at)
            if throttled is not None:
                return throttled
            result: dict[str, Any] = {"id": conversation_id}
            activity = body.get("activity")
            if isinstance(activity, dict):
                message = self._store_locked(call, conversation_id, conversation_id, activity, None)
                result["activityId"] = message.activity_id
            else:
                self._send_times.setdefault(conversation_id, []).append(call.at)
        return _json_response(result, 201)

    # -- inbound activities -------------------------------------------------------------

    def _envelope(
        self,
        kind: str,
        conversation: dict[str, Any],
        sender: dict[str, Any],
        channel_data: dict[str, Any],
        *,
        activity_id: str | None = None,
        service_url: str | None = None,
    ) -> dict[str, Any]:
        now = _now_iso()
        return {
            "type": kind,
            "id": activity_id or f"f:{uuid.uuid4()}",
            "timestamp": now,
            "localTimestamp": now.replace("Z", "+00:00"),
            "localTimezone": "Etc/UTC",
            "serviceUrl": service_url or self.service_url,
            "channelId": "msteams",
            "from": sender,
            "conversation": conversation,
            "recipient": {"id": self.bot_id, "name": self.bot_name},
            "entities": [
                {
                    "type": "clientInfo",
                    "locale": "en-US",
                    "country": "US",
                    "platform": "Web",
                    "timezone": "Etc/UTC",
                }
            ],
            "channelData": channel_data,
            "locale": "en-US",
        }

    def install_activity(
        self,
        user_aad_id: str,
        *,
        user_id: str | None = None,
        name: str = "Test User",
        conversation_id: str | None = None,
        tenant_id: str | None = None,
        service_url: str | None = None,
    ) -> dict[str, Any]:
        """A personal-scope ``installationUpdate`` (``action: add``): the user installed the
        app. Marks them installed and opens their personal conversation."""
        tenant = tenant_id or self.tenant_id
        conversation = self.install_for(
            user_aad_id,
            user_id=user_id,
            name=name,
            tenant_id=tenant,
            conversation_id=conversation_id,
        )
        known = self.user(user_aad_id)
        activity = self._envelope(
            "installationUpdate",
            {"conversationType": "personal", "tenantId": tenant, "id": conversation},
            {"id": known.user_id, "aadObjectId": known.aad_object_id, "name": known.name},
            {"tenant": {"id": tenant}, "source": {"name": "message"}},
            service_url=service_url,
        )
        activity["action"] = "add"
        return activity

    def channel_install_activity(
        self,
        team_id: str,
        channel_id: str,
        *,
        kind: Literal["installationUpdate", "conversationUpdate"] = "installationUpdate",
        installer_aad_id: str | None = None,
        installer_name: str = "Team Owner",
        team_name: str = "Approvers",
        channel_name: str = "General",
        tenant_id: str | None = None,
        service_url: str | None = None,
    ) -> dict[str, Any]:
        """The app was added to a team: an ``installationUpdate`` (``action: add``) or the
        ``conversationUpdate`` with the bot in ``membersAdded`` (``eventType:
        teamMemberAdded``), in the channel's conversation. Registers the channel."""
        tenant = tenant_id or self.tenant_id
        self.add_channel(
            team_id, channel_id, tenant_id=tenant, team_name=team_name, channel_name=channel_name
        )
        installer = installer_aad_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"owner:{team_id}"))
        sender = {
            "id": _stable("29:1", f"{self.app_id}:{installer}"),
            "aadObjectId": installer,
            "name": installer_name,
        }
        channel_data: dict[str, Any] = {
            "tenant": {"id": tenant},
            "team": {
                "id": team_id,
                "name": team_name,
                "aadGroupId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{team_id}")),
            },
            "channel": {"id": channel_id, "name": channel_name},
            "settings": {"selectedChannel": {"id": channel_id}},
        }
        if kind == "conversationUpdate":
            channel_data["eventType"] = "teamMemberAdded"
        activity = self._envelope(
            kind,
            {
                "isGroup": True,
                "conversationType": "channel",
                "tenantId": tenant,
                "id": channel_id,
            },
            sender,
            channel_data,
            service_url=service_url,
        )
        if kind == "installationUpdate":
            activity["action"] = "add"
        else:
            activity["membersAdded"] = [{"id": self.bot_id}]
        return activity

    def invoke_activity(
        self,
        message: Message | str,
        *,
        user_aad_id: str,
        user_id: str | None = None,
        name: str = "Test User",
        verb: str,
        data: dict[str, Any],
        tenant_id: str | None = None,
        conversation_id: str | None = None,
        service_url: str | None = None,
    ) -> dict[str, Any]:
        """A click on an ``Action.Execute`` button of ``message`` (a :class:`Message`, or an
        activity id with ``conversation_id``): an ``invoke`` named ``adaptiveCard/action``.
        In a channel the conversation id carries ``;messageid=`` of the thread's root, as
        Teams sends it. Nothing checks that the card has such a button: forge freely."""
        if isinstance(message, Message):
            card_id = message.activity_id
            base = message.conversation_id
            root = message.reply_to_id or message.activity_id
        else:
            if conversation_id is None:
                raise ValueError("an activity id needs conversation_id")
            card_id = message
            base, thread_root = _split_thread(conversation_id)
            root = thread_root or message
        with self._lock:
            known = self._users_by_aad.get(user_aad_id)
            conversation = self._conversations.get(base)
        tenant = tenant_id or (
            conversation.tenant_id if conversation else (known.tenant_id if known else None)
        )
        tenant = tenant or self.tenant_id
        sender_id = user_id or (
            known.user_id if known else _stable("29:1", f"{self.app_id}:{user_aad_id}")
        )
        channel_data: dict[str, Any] = {"tenant": {"id": tenant}, "source": {"name": "message"}}
        conversation_json: dict[str, Any]
        if conversation is not None and conversation.conversation_type == "channel":
            conversation_json = {
                "isGroup": True,
                "conversationType": "channel",
                "tenantId": tenant,
                "id": conversation_id or f"{base};messageid={root}",
            }
            channel_data["team"] = {"id": conversation.team_id, "name": conversation.team_name}
            channel_data["channel"] = {
                "id": conversation.channel_id,
                "name": conversation.channel_name,
            }
        else:
            conversation_json = {
                "conversationType": "personal",
                "tenantId": tenant,
                "id": conversation_id or base,
            }
        channel_data["legacy"] = {"replyToId": card_id}
        activity = self._envelope(
            "invoke",
            conversation_json,
            {"id": sender_id, "aadObjectId": user_aad_id, "name": name},
            channel_data,
            service_url=service_url,
        )
        activity["name"] = "adaptiveCard/action"
        activity["replyToId"] = card_id
        activity["value"] = {
            "action": {"type": "Action.Execute", "verb": verb, "data": data},
            "trigger": "manual",
        }
        return activity
