"""JSON request bodies with a key given twice are refused (400), at any depth.

The JSON standard leaves duplicate keys undefined and Python's parser keeps the last one,
so ``{"action": "read", "action": "db.drop"}`` would mean whatever the last writer meant
while a proxy or log reader may see the first. Every JSON body under the agent API is
parsed here once more, with a hook that refuses a repeated key, before the framework parses
it; bodies that are not JSON are left to the framework's own errors.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bot.errors import error_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHECKED_PREFIXES = ("/v1/",)
"""Paths whose JSON bodies are checked: the agent API (the web inbox takes forms only)."""


_SHOWN_KEY_CHARS = 100


class DuplicateKeyError(ValueError):
    """A JSON object in the body has the same key more than once."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def duplicated_key(body: bytes) -> str | None:
    """The first key found twice in one object of the JSON ``body``, or ``None``.

    ``None`` too when ``body`` is not JSON at all: the framework answers that itself.
    """
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except DuplicateKeyError as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None
    return None


def _is_json(scope: Scope) -> bool:
    """Whether the framework would parse this request's body as JSON (FastAPI's own test:
    no Content-Type, or ``application/json`` or ``application/*+json``)."""
    content_type = next(
        (
            value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name == b"content-type"
        ),
        None,
    )
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class DuplicateKeyMiddleware:
    """Answers 400 ``duplicate_key`` naming the key when a checked JSON body repeats one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not str(scope.get("path", "")).startswith(CHECKED_PREFIXES)
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        # The body is bounded by the body limit, which runs outside this middleware.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        key = duplicated_key(body) if body else None
        if key is not None:
            shown = key if len(key) <= _SHOWN_KEY_CHARS else key[: _SHOWN_KEY_CHARS - 3] + "..."
            response = error_json(
                400, "duplicate_key", f"the key {shown!r} appears twice in one object of the body"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` for an app after a middleware has read the whole request body: it
    hands over ``body`` once, then whatever the connection says next (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
