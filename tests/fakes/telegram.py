"""A fake Telegram Bot API on 127.0.0.1 that the real python-telegram-bot talks to.

It implements the methods signoff uses (getMe, deleteWebhook, setWebhook, getUpdates as a
long poll, sendMessage, editMessageText, answerCallbackQuery), checks HTML the way Telegram
does (only Telegram's tags, balanced, entities escaped; lengths in UTF-16 units after
parsing) and records the entities Telegram would make, including the ones it detects by
itself in plain text (``@mentions``, URLs, ``#tags``...). Faults are injected per method
(429 with ``retry_after``, 5xx), and ``click``/``reply`` deliver updates through the real
inbound path: the long poll, or a POST to the registered webhook with its secret header.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.waiting import wait_for

TOKEN = "123456:TEST-token"
BOT_USER: dict[str, Any] = {
    "id": 123456,
    "is_bot": True,
    "first_name": "signoff",
    "username": "signoff_bot",
}
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64

_JSON_FIELDS = {
    "chat_id",
    "message_id",
    "reply_markup",
    "link_preview_options",
    "reply_parameters",
    "offset",
    "limit",
    "timeout",
    "allowed_updates",
    "show_alert",
    "cache_time",
    "drop_pending_updates",
    "max_connections",
    "disable_notification",
}

# -- Telegram's HTML ---------------------------------------------------------------------------

_TAG_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_FORMATTING = {"bold", "italic", "underline", "strikethrough", "spoiler"}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,7})|#x([0-9a-fA-F]{1,6}));")
_START_TAG = re.compile(
    r"<([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>]+))*)\s*>"
)
_END_TAG = re.compile(r"</([a-zA-Z][a-zA-Z0-9-]*)\s*>")
_ATTRIBUTE = re.compile(r"([a-zA-Z-]+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)")

# What Telegram turns into entities by itself in plain text (outside code, pre and links).
_AUTO_ENTITIES = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("url", re.compile(r"(?i)\b(?:https?://|tg://|www\.)[^\s<>\"]+")),
    (
        "url",
        re.compile(
            r"(?i)\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|dev|app|me|ru|co|uk|de|info|xyz|ly|gg|tv)"
            r"\b(?:/\S*)?"
        ),
    ),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{1,32}")),
    ("hashtag", re.compile(r"(?<![\w#])#[^\W\d]\w*")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Z]{3,8}\b")),
    ("bot_command", re.compile(r"(?<![\w/])/[A-Za-z][A-Za-z0-9_]{0,63}")),
]


class HtmlError(ValueError):
    """What Telegram answers: ``Bad Request: can't parse entities: ...``."""


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Text and entities, as Telegram parses ``parse_mode=HTML``; raises :class:`HtmlError`."""
    out: list[str] = []
    length = 0
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    index = 0

    def add(text: str) -> None:
        nonlocal length
        out.append(text)
        length += _u16(text)

    while index < len(source):
        char = source[index]
        if char == "&":
            match = _ENTITY.match(source, index)
            if match is None:
                raise HtmlError(f"unsupported HTML entity at byte offset {index}")
            if match.group(1):
                add(_NAMED_ENTITIES[match.group(1)])
            else:
                code = int(match.group(2)) if match.group(2) else int(match.group(3), 16)
                add(chr(code))
            index = match.end()
        elif char == "<":
            end = _END_TAG.match(source, index)
            if end is not None:
                name = end.group(1).lower()
                if not stack or stack[-1][0] != name:
                    raise HtmlError(f"can't find start tag corresponding to end tag {name}")
                tag, start, attrs = stack.pop()
                entity = _entity_for(tag, start, length - start, attrs, stack)
                if entity is not None:
                    entities.append(entity)
                index = end.end()
                continue
            start_tag = _START_TAG.match(source, index)
            if start_tag is None:
                raise HtmlError(f"unsupported start tag at byte offset {index}")
            name = start_tag.group(1).lower()
            if name not in _TAG_TYPES:
                raise HtmlError(f'unsupported start tag "{name}" at byte offset {index}')
            attrs = {
                key.lower(): value.strip("\"'")
                for key, value in _ATTRIBUTE.findall(start_tag.group(2))
            }
            _check_nesting(name, stack)
            if name == "a" and "href" not in attrs:
                raise HtmlError("a tag without href")
            stack.append((name, length, attrs))
            index = start_tag.end()
        elif char == ">":
            raise HtmlError(f"unexpected '>' at byte offset {index}")
        else:
            add(char)
            index += 1
    if stack:
        raise HtmlError(f"can't find end tag corresponding to start tag {stack[-1][0]}")
    text = "".join(out)
    entities.extend(_auto_entities(text, entities))
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return text, entities


def _check_nesting(name: str, stack: list[tuple[str, int, dict[str, str]]]) -> None:
    inner = [_TAG_TYPES[tag] for tag, _start, _attrs in stack]
    kind = _TAG_TYPES[name]
    if "code" in inner or ("pre" in inner and kind != "code"):
        raise HtmlError(f"{name} can't be inside code or pre")
    if kind in ("code", "pre") and any(k in _FORMATTING or k == "text_link" for k in inner):
        raise HtmlError(f"{name} can't be inside other entities")
    if kind == "text_link" and "text_link" in inner:
        raise HtmlError("links can't be nested")
    if kind == "blockquote" and "blockquote" in inner:
        raise HtmlError("blockquotes can't be nested")


def _entity_for(
    tag: str,
    offset: int,
    length: int,
    attrs: dict[str, str],
    stack: list[tuple[str, int, dict[str, str]]],
) -> dict[str, Any] | None:
    if length == 0:
        return None
    kind = _TAG_TYPES[tag]
    entity: dict[str, Any] = {"type": kind, "offset": offset, "length": length}
    if kind == "text_link":
        href = attrs["href"]
        mention = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if mention:
            user = {"id": int(mention.group(1)), "is_bot": False, "first_name": "someone"}
            entity = {**entity, "type": "text_mention", "user": user}
        else:
            entity["url"] = href
    if kind == "code" and stack and stack[-1][0] == "pre":
        return None  # <pre><code class="language-x"> is one pre entity
    return entity


def _utf16_offset(text: str, index: int) -> int:
    return _u16(text[:index])


def _auto_entities(text: str, explicit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities Telegram detects by itself, outside code, pre and links."""
    shielded = [
        (e["offset"], e["offset"] + e["length"])
        for e in explicit
        if e["type"] in ("code", "pre", "text_link", "text_mention")
    ]
    found: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _AUTO_ENTITIES:
        for match in pattern.finditer(text):
            start = _utf16_offset(text, match.start())
            end = _utf16_offset(text, match.end())
            if any(start < hi and lo < end for lo, hi in shielded + taken):
                continue
            taken.append((start, end))
            found.append({"type": kind, "offset": start, "length": end - start})
    return found


# -- state -------------------------------------------------------------------------------------


@dataclass
class FakeMessage:
    """A message in a chat, as the fake stores it."""

    chat: dict[str, Any]
    message_id: int
    text: str
    entities: list[dict[str, Any]]
    html: str | None
    sender: dict[str, Any]
    reply_markup: dict[str, Any] | None = None
    reply_to: FakeMessage | None = None
    date: int = field(default_factory=lambda: int(time.time()))
    edits: int = 0

    @property
    def chat_id(self) -> int:
        return int(self.chat["id"])

    def to_json(self, *, with_reply: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "date": self.date,
            "chat": self.chat,
            "from": self.sender,
            "text": self.text,
        }
        if self.entities:
            data["entities"] = self.entities
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            data["reply_markup"] = self.reply_markup
        if self.edits:
            data["edit_date"] = self.date
        if with_reply and self.reply_to is not None:
            data["reply_to_message"] = self.reply_to.to_json(with_reply=False)
        return data

    def buttons(self) -> list[dict[str, Any]]:
        if not self.reply_markup:
            return []
        return [b for row in self.reply_markup.get("inline_keyboard", []) for b in row]

    def button_data(self, label: str) -> str:
        """The callback data of the button whose text contains ``label``."""
        for button in self.buttons():
            if label.lower() in button["text"].lower():
                return str(button["callback_data"])
        raise AssertionError(f"no button {label!r} on message {self.message_id}: {self.buttons()}")


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float
    status: int


@dataclass
class _Fault:
    method: str
    status: int
    description: str
    retry_after: int | None
    skip: int


class FakeBotApi:
    """The fake server. ``base_url`` is what ``ApplicationBuilder.base_url`` wants."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[ApiCall] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.started_bot: set[int] = set()
        self.messages: dict[tuple[int, int], FakeMessage] = {}
        self.answers: dict[str, str] = {}
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self._next_message: dict[int, itertools.count[int]] = {}
        self._update_ids = itertools.count(1000)
        self._query_ids = itertools.count(1)
        self._updates: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._closing = False
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- setup ---------------------------------------------------------------------------------

    def add_group(self, chat_id: int, title: str) -> None:
        self.chats[chat_id] = {"id": chat_id, "type": "supergroup", "title": title}

    def add_user(self, user_id: int, first_name: str, *, started: bool = True) -> None:
        """A person; ``started`` means they opened a private chat with the bot."""
        self.users[user_id] = {"id": user_id, "is_bot": False, "first_name": first_name}
        self.chats[user_id] = {"id": user_id, "type": "private", "first_name": first_name}
        if started:
            self.started_bot.add(user_id)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Release parked long polls (aiohttp does not cancel them), then stop serving."""
        self._closing = True
        self._arrived.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- faults --------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer ``status`` to one call of ``method``, after ``after`` calls that succeed."""
        text = description or {
            429: f"Too Many Requests: retry after {retry_after}",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }.get(status, f"Error {status}")
        self._faults.append(_Fault(method, status, text, retry_after, after))

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method:
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                self._faults.remove(fault)
                return fault
        return None

    # -- what happened -------------------------------------------------------------------------

    def sent(self, method: str = "sendMessage", *, ok_only: bool = True) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def chat_messages(self, chat_id: int) -> list[FakeMessage]:
        return sorted(
            (m for (c, _), m in self.messages.items() if c == chat_id), key=lambda m: m.message_id
        )

    def bot_messages(self, chat_id: int) -> list[FakeMessage]:
        return [m for m in self.chat_messages(chat_id) if m.sender["id"] == BOT_USER["id"]]

    def card_for(self, request_id: str, chat_id: int) -> FakeMessage | None:
        """The bot's card for a request in a chat (found by its link to the web inbox)."""
        for message in self.bot_messages(chat_id):
            for entity in message.entities:
                if entity.get("url", "").endswith(f"/requests/{request_id}"):
                    return message
        return None

    async def until(self, predicate: Callable[[], Any], *, within: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (the fake's state changes asynchronously)."""

        async def check() -> Any:
            return predicate()

        return await wait_for(check, within=within, poll=0.01)

    # -- inbound updates -----------------------------------------------------------------------

    def _user(self, user_id: int) -> dict[str, Any]:
        return self.users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "X"}

    def callback_update(
        self, user_id: int, message: FakeMessage | dict[str, Any], data: str
    ) -> dict[str, Any]:
        """A ``callback_query`` update: ``user_id`` pressed a button with ``data``."""
        shown = message.to_json() if isinstance(message, FakeMessage) else message
        return {
            "update_id": next(self._update_ids),
            "callback_query": {
                "id": f"cq{next(self._query_ids)}",
                "from": self._user(user_id),
                "chat_instance": f"ci{shown['chat']['id']}",
                "data": data,
                "message": shown,
            },
        }

    async def click(
        self, user_id: int, message: FakeMessage | dict[str, Any], data: str
    ) -> dict[str, Any]:
        """Press a button (through the long poll or the webhook). Returns the update."""
        update = self.callback_update(user_id, message, data)
        await self.deliver(update)
        return update

    async def reply(self, user_id: int, to: FakeMessage, text: str) -> dict[str, Any]:
        """A person replies to a message in its chat. Returns the update."""
        message = FakeMessage(
            chat=to.chat,
            message_id=self._new_message_id(to.chat_id),
            text=text,
            entities=[],
            html=None,
            sender=self._user(user_id),
            reply_to=to,
        )
        self.messages[(to.chat_id, message.message_id)] = message
        update = {"update_id": next(self._update_ids), "message": message.to_json()}
        await self.deliver(update)
        return update

    async def deliver(self, update: dict[str, Any], *, secret: str | None = None) -> int:
        """Hand ``update`` to the bot: queue it for getUpdates, or POST it to the webhook.

        Returns the HTTP status the webhook answered (200 when queued).
        """
        if self.webhook_url is None:
            self._updates.append(update)
            self._arrived.set()
            return 200
        headers = {"Content-Type": "application/json"}
        token = self.webhook_secret if secret is None else secret
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, data=json.dumps(update), headers=headers) as response,
        ):
            return response.status

    def answer_to(self, update: dict[str, Any]) -> str | None:
        """The toast text the bot answered a callback update with, if it answered yet."""
        return self.answers.get(update["callback_query"]["id"])

    # -- the API -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return error_response(401, "Unauthorized")
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                params = await request.json()
            else:
                for key, value in (await request.post()).items():
                    if key in _JSON_FIELDS:
                        assert isinstance(value, str), f"{key} is not JSON text"
                        params[key] = json.loads(value)
                    else:
                        params[key] = value
        fault = self._take_fault(method)
        if fault is not None:
            self.calls.append(ApiCall(method, params, time.monotonic(), fault.status))
            extra = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
            return error_response(fault.status, fault.description, parameters=extra)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return error_response(404, "Not Found")
        at = time.monotonic()
        response: web.Response = await handler(params)
        self.calls.append(ApiCall(method, params, at, response.status))
        return response

    async def _api_getMe(self, _params: dict[str, Any]) -> web.Response:
        return ok_response(
            {**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False}
        )

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook_url = None
        self.webhook_secret = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return ok_response(True)

    async def _api_setWebhook(self, params: dict[str, Any]) -> web.Response:
        url = params.get("url", "")
        self.webhook_url = url or None
        self.webhook_secret = params.get("secret_token")
        pending, self._updates = self._updates, []
        for update in pending:
            await self.deliver(update)
        return ok_response(True)

    async def _api_getWebhookInfo(self, _params: dict[str, Any]) -> web.Response:
        return ok_response(
            {"url": self.webhook_url or "", "pending_update_count": len(self._updates)}
        )

    async def _api_getUpdates(self, params: dict[str, Any]) -> web.Response:
        if self.webhook_url is not None:
            return error_response(
                409, "Conflict: can't use getUpdates method while webhook is active"
            )
        offset = params.get("offset")
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= int(offset)]
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self._updates and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return ok_response(self._updates[:limit])

    def _new_message_id(self, chat_id: int) -> int:
        counter = self._next_message.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _chat_problem(self, chat_id: Any) -> web.Response | None:
        try:
            chat_id = int(chat_id)
        except (TypeError, ValueError):
            return error_response(400, "Bad Request: chat not found")
        chat = self.chats.get(chat_id)
        if chat is None:
            return error_response(400, "Bad Request: chat not found")
        if chat["type"] == "private" and chat_id not in self.started_bot:
            return error_response(403, "Forbidden: bot can't initiate conversation with a user")
        return None

    def _parse_text(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        source = str(params.get("text", ""))
        if params.get("parse_mode") == "HTML":
            text, entities = parse_html(source)
        else:
            text, entities = source, _auto_entities(source, [])
        if not text.strip():
            raise HtmlError("message text is empty")
        if _u16(text) > MAX_TEXT:
            raise HtmlError("message is too long")
        return text, entities

    @staticmethod
    def _markup_problem(markup: dict[str, Any] | None) -> str | None:
        if not markup or "inline_keyboard" not in markup:
            return None
        for row in markup["inline_keyboard"]:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                    return "Bad Request: BUTTON_DATA_INVALID"
        return None

    async def _api_sendMessage(self, params: dict[str, Any]) -> web.Response:
        problem = self._chat_problem(params.get("chat_id"))
        if problem is not None:
            return problem
        chat_id = int(params["chat_id"])
        try:
            text, entities = self._parse_text(params)
        except HtmlError as exc:
            return error_response(400, f"Bad Request: can't parse entities: {exc}")
        markup = params.get("reply_markup")
        markup_problem = self._markup_problem(markup)
        if markup_problem:
            return error_response(400, markup_problem)
        reply_to = None
        reply_parameters = params.get("reply_parameters")
        if reply_parameters:
            reply_to = self.messages.get((chat_id, int(reply_parameters["message_id"])))
        message = FakeMessage(
            chat=self.chats[chat_id],
            message_id=self._new_message_id(chat_id),
            text=text,
            entities=entities,
            html=str(params.get("text")),
            sender=dict(BOT_USER),
            reply_markup=markup,
            reply_to=reply_to,
        )
        self.messages[(chat_id, message.message_id)] = message
        return ok_response(message.to_json())

    async def _api_editMessageText(self, params: dict[str, Any]) -> web.Response:
        try:
            key = (int(params["chat_id"]), int(params["message_id"]))
        except (KeyError, TypeError, ValueError):
            return error_response(400, "Bad Request: message identifier is not specified")
        message = self.messages.get(key)
        if message is None:
            return error_response(400, "Bad Request: message to edit not found")
        try:
            text, entities = self._parse_text(params)
        except HtmlError as exc:
            return error_response(400, f"Bad Request: can't parse entities: {exc}")
        markup = params.get("reply_markup")
        markup_problem = self._markup_problem(markup)
        if markup_problem:
            return error_response(400, markup_problem)
        if text == message.text and entities == message.entities and markup == message.reply_markup:
            return error_response(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message.text = text
        message.entities = entities
        message.html = str(params.get("text"))
        message.reply_markup = markup
        message.edits += 1
        return ok_response(message.to_json())

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        query_id = str(params.get("callback_query_id"))
        if query_id in self.answers:
            return error_response(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.answers[query_id] = str(params.get("text", ""))
        return ok_response(True)


def ok_response(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def error_response(
    status: int, description: str, *, parameters: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)
