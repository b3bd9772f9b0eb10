"""The fake platforms of ``tests/`` with their send limits enforced, as the real ones do.

Each counts a new message against a :class:`~bench.ratelimits.SendLimits` when it arrives
and answers a message over the limit the way its platform does: Slack with HTTP 429,
``ratelimited`` and a whole-second ``Retry-After``; Telegram with 429 and
``parameters.retry_after``; Teams with 429 and a whole-second ``Retry-After``, per
conversation; Discord with its per-channel buckets (``X-RateLimit-*`` headers
on every answer, 429 when a bucket is empty) and a global 429. ``refusals`` counts the 429s
and ``delivered`` lists (arrival time, chat) for every message that went through.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from bench.ratelimits import SendLimits
from tests.fakes import (
    FakeBotApi,
    FakeDiscord,
    FakeSlack,
    FakeTeams,
    discord_json_response,
    telegram_error_response,
)
from tests.fakes.teams import ApiCall


def _whole_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


class LimitedSlack(FakeSlack):
    """Fake Slack enforcing ``limits`` on ``chat.postMessage``."""

    def __init__(self, limits: SendLimits, **credentials: str) -> None:
        super().__init__(**credentials)
        self.book = limits.book()
        self.refusals = 0
        self.delivered: list[tuple[float, str]] = []

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["method"] != "chat.postMessage":
            return await super()._api(request)
        channel = str((await self._params(request)).get("channel", ""))
        now = time.monotonic()
        wait = self.book.wait(channel, now)
        if wait > 0:
            self.refusals += 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(_whole_seconds(wait))},
            )
        self.book.record(channel, now)
        response = await super()._api(request)
        self.delivered.append((now, channel))
        return response


class LimitedBotApi(FakeBotApi):
    """Fake Telegram Bot API enforcing ``limits`` on ``sendMessage``."""

    def __init__(self, limits: SendLimits, token: str) -> None:
        super().__init__(token)
        self.book = limits.book()
        self.refusals = 0
        self.delivered: list[tuple[float, str]] = []

    async def _api_sendMessage(self, params: dict[str, Any]) -> web.Response:
        chat = str(params.get("chat_id"))
        now = time.monotonic()
        wait = self.book.wait(chat, now)
        if wait > 0:
            self.refusals += 1
            seconds = _whole_seconds(wait)
            return telegram_error_response(
                429,
                f"Too Many Requests: retry after {seconds}",
                parameters={"retry_after": seconds},
            )
        self.book.record(chat, now)
        response = await super()._api_sendMessage(params)
        self.delivered.append((now, chat))
        return response


class LimitedDiscord(FakeDiscord):
    """Fake Discord: per-channel buckets of ``limits.chat_bucket`` and ``limits.overall``
    over every REST call."""

    def __init__(self, limits: SendLimits, bot_token: str) -> None:
        super().__init__(bot_token=bot_token)
        assert limits.chat_bucket is not None, "Discord limits channels with buckets"
        self.book = SendLimits(overall=limits.overall).book()
        self.bucket_limit = limits.chat_bucket.count
        self.bucket_reset_after = limits.chat_bucket.period
        self.refusals = 0
        self.delivered: list[tuple[float, str]] = []

    async def _create_message(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel_id"]
        now = time.monotonic()
        # The global limit is this book's; the per-channel buckets are the parent class's.
        wait = self.book.wait("global", now)
        if wait > 0:
            self.refusals += 1
            call = await self._record("create_message", request)
            call.status = 429
            body = {"message": "You are being rate limited.", "retry_after": wait, "global": True}
            headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
            return discord_json_response(body, 429, {**headers, "Via": "1.1 google"})
        self.book.record("global", now)
        response = await super()._create_message(request)
        if response.status == 429:
            self.refusals += 1
        elif response.status == 200:
            self.delivered.append((now, channel))
        return response


class LimitedTeams(FakeTeams):
    """Fake Teams enforcing ``limits`` on every message posted to a conversation (instead
    of its own real-time windows, so that time can run faster)."""

    def __init__(
        self, limits: SendLimits, *, app_id: str, app_password: str, tenant_id: str
    ) -> None:
        super().__init__(app_id=app_id, app_password=app_password, tenant_id=tenant_id)
        self.book = limits.book()
        self.refusals = 0
        self.delivered: list[tuple[float, str]] = []

    async def start(self) -> None:  # type: ignore[override]
        FakeTeams.start(self)

    async def close(self) -> None:
        self.stop()

    def _throttle_locked(self, call: ApiCall, key: str, now: float) -> web.Response | None:
        wait = self.book.wait(key, now)
        if wait > 0:
            self.refusals += 1
            return self._refuse(call, 429, headers={"Retry-After": str(_whole_seconds(wait))})
        self.book.record(key, now)
        self.delivered.append((now, key))
        return None
