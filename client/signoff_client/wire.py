"""How the client speaks the agent API, without doing any I/O itself.

The sync ``Client`` and the ``AsyncClient`` share everything here: where the server is,
what each call sends, how an answer becomes a JSON object or an ``ApiError``, which
failures are worth retrying and how long to wait before the next attempt.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from signoff_client.canonical import CanonicalJsonError, canonical_json
from signoff_client.errors import (
    ApiError,
    ConfigurationError,
    NetworkError,
    SignoffError,
)

DEFAULT_URL = "http://127.0.0.1:8080"
URL_VARIABLE = "SIGNOFF_URL"
KEY_VARIABLE = "SIGNOFF_API_KEY"
USER_AGENT = "signoff-python"

MAX_LONG_POLL_SECONDS = 60
"""The server holds a long-poll at most this long."""
DEFAULT_LONG_POLL_SECONDS = 50
"""One slice of waiting: under the 60 s that proxies and MCP clients commonly allow."""
MIN_POLL_INTERVAL = 1.0
"""A long-poll answered early while still pending (a server stopping) is not repeated sooner."""
CONNECT_TIMEOUT = 10.0
READ_MARGIN = 15.0
"""Seconds a long-poll's read may take beyond what the server was asked to hold it."""
DEADLINE_GRACE = 0.5
"""Seconds an attempt may run past the caller's deadline (a wait's ``timeout``): a slow
connection is given up then, so that a bounded wait ends on time even during an outage."""

RetryHook = Callable[[SignoffError, float], None]
"""Called before each retry with the failure and the seconds it will wait."""


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, and the pauses between attempts.

    Connection failures, timeouts, broken connections, 429, 502, 503 and 504 are retried;
    every other error is final. The n-th retry waits ``delays[n]`` seconds (plus up to
    ``jitter`` of it at random, so many clients do not retry in step), or the server's
    ``Retry-After`` when that is longer, capped at ``max_retry_after``. After
    ``len(delays)`` retries the error is raised.
    """

    delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
    max_retry_after: float = 60.0
    jitter: float = 0.1

    def delay_after(self, error: SignoffError, failures: int) -> float | None:
        """Seconds to wait before retrying after ``failures`` failures, or None to give up."""
        if failures >= len(self.delays):
            return None
        if isinstance(error, ApiError):
            if not error.retryable:
                return None
        elif not (isinstance(error, NetworkError) and error.retryable):
            return None
        delay = self.delays[failures]
        # The jitter comes from a non-cryptographic source on purpose: it only spreads load.
        delay *= 1 + random.uniform(0, self.jitter)  # noqa: S311
        if isinstance(error, ApiError) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_retry_after))
        return delay


NO_RETRIES = RetryPolicy(delays=())


@dataclass(frozen=True)
class Settings:
    """Where the server is and the agent's API key."""

    base_url: str
    api_key: str

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Explicit values, else ``SIGNOFF_URL`` / ``SIGNOFF_API_KEY``; the URL defaults to
        ``http://127.0.0.1:8080``.

        Raises:
            ConfigurationError: without an API key, or with a URL that is not http(s).
        """
        env = os.environ if environ is None else environ
        url = (base_url or env.get(URL_VARIABLE) or DEFAULT_URL).strip().rstrip("/")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigurationError(f"{url!r} is not a URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError(
                f"the signoff URL {url!r} must be an http:// or https:// URL, such as "
                f"{DEFAULT_URL} ({URL_VARIABLE})"
            )
        key = (api_key if api_key is not None else env.get(KEY_VARIABLE, "")).strip()
        if not key:
            raise ConfigurationError(
                f"{KEY_VARIABLE} is not set: export the agent's API key "
                "(an admin makes one with: signoff agents add NAME)"
            )
        return cls(base_url=url, api_key=key)

    def headers(self, user_agent: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": user_agent}


def check_long_poll_seconds(seconds: int) -> int:
    if not 1 <= seconds <= MAX_LONG_POLL_SECONDS:
        raise ValueError(f"long_poll_seconds must be 1 to {MAX_LONG_POLL_SECONDS}, not {seconds}")
    return seconds


def timeout_for(read_seconds: float, deadline: float | None = None) -> httpx.Timeout:
    """One attempt's timeouts; with ``deadline`` (a ``time.monotonic()`` instant), none of
    them lasts past it (plus ``DEADLINE_GRACE``)."""
    connect, read = CONNECT_TIMEOUT, read_seconds + READ_MARGIN
    if deadline is not None:
        left = max(deadline - time.monotonic(), 0.0) + DEADLINE_GRACE
        connect, read = min(connect, left), min(read, left)
    return httpx.Timeout(connect, read=read)


def retry_delay(
    policy: RetryPolicy, error: SignoffError, failures: int, deadline: float | None
) -> float | None:
    """The pause before the next attempt, or None to raise ``error`` now: when the policy
    gives up, or when the attempt after the pause would start at or after ``deadline``."""
    delay = policy.delay_after(error, failures)
    if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
        return None
    return delay


@dataclass(frozen=True)
class Call:
    """One call of the agent API: what to send, and whether a failure may be retried."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: int = 0
    """How long the server may hold the answer (a long-poll); the read timeout allows it."""


def approval_path(request_id: str, suffix: str = "") -> str:
    return f"/v1/approvals/{quote(request_id, safe='')}{suffix}"


def new_idempotency_key() -> str:
    """A fresh key: a retried create with it returns the first request, never a second."""
    return secrets.token_urlsafe(18)


def create_body(
    action: str,
    title: str,
    *,
    details: str | None,
    params: Mapping[str, Any] | None,
    requested_by: str | None,
    timeout_seconds: int | None,
    callback_url: str | None,
) -> dict[str, Any]:
    """The create body; ``SignoffError`` when it has no JSON form."""
    body: dict[str, Any] = {"action": action, "title": title, "params": dict(params or {})}
    optional = {
        "details": details,
        "requested_by": requested_by,
        "timeout_seconds": timeout_seconds,
        "callback_url": callback_url,
    }
    body.update({name: value for name, value in optional.items() if value not in (None, "")})
    try:
        canonical_json(body)
    except CanonicalJsonError as exc:
        raise SignoffError(f"the request cannot be sent as JSON: {exc}") from exc
    return body


def create_call(body: dict[str, Any], idempotency_key: str) -> Call:
    return Call("POST", "/v1/approvals", json=body, headers={"Idempotency-Key": idempotency_key})


def get_call(request_id: str, wait_seconds: int = 0) -> Call:
    return Call(
        "GET",
        approval_path(request_id),
        params={"wait": str(wait_seconds)} if wait_seconds else None,
        hold_seconds=wait_seconds,
    )


def cancel_call(request_id: str, reason: str | None) -> Call:
    return Call("POST", approval_path(request_id, "/cancel"), json={"reason": reason})


def list_call(status: str | None, limit: int) -> Call:
    params = {"limit": str(limit)}
    if status:
        params["status"] = status
    return Call("GET", "/v1/approvals", params=params)


def receipt_call(request_id: str) -> Call:
    return Call("GET", approval_path(request_id, "/receipt"))


def receipt_keys_call() -> Call:
    return Call("GET", "/v1/receipt-keys")


def next_slice(long_poll_seconds: int, remaining: float | None) -> int:
    """Seconds to ask the server to hold the next long-poll, given the caller's time left.

    Rounded down, so the server answers before the caller's deadline; under a second left
    is a plain look (0).
    """
    if remaining is None:
        return long_poll_seconds
    return max(0, min(long_poll_seconds, math.floor(remaining)))


def network_error(exc: httpx.TransportError, base_url: str) -> NetworkError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        detail = f"timed out ({detail})"
    # A broken or refused connection may heal; a malformed URL or a refused proxy will not.
    retryable = isinstance(
        exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError
    )
    return NetworkError(f"cannot reach signoff at {base_url}: {detail}", retryable=retryable)


def read_answer(response: httpx.Response, base_url: str) -> dict[str, Any]:
    """The JSON object of a successful answer; otherwise the error it carries.

    Raises:
        ApiError: for an error status (with the server's code and message when it sent them).
        SignoffError: for a success that is not a JSON object (not signoff at that URL).
    """
    body = _json_object(response)
    if response.is_success:
        if body is None:
            raise SignoffError(
                f"{base_url} did not answer like signoff (HTTP {response.status_code}, "
                f"{response.headers.get('content-type', 'no content type')}); check the URL"
            )
        return body
    retry_after: float | None = None
    with contextlib.suppress(ValueError):
        retry_after = float(response.headers.get("Retry-After", ""))
    error = body.get("error") if body else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        raise ApiError(
            response.status_code,
            str(error.get("code", "error")),
            error["message"],
            retry_after=retry_after,
        )
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    raise ApiError(response.status_code, "http_error", text, retry_after=retry_after)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def check_request_json(body: dict[str, Any], base_url: str) -> dict[str, Any]:
    """``body`` if it looks like a request (an id and a status), else ``SignoffError``."""
    if not isinstance(body.get("id"), str) or not isinstance(body.get("status"), str):
        raise SignoffError(f"{base_url} did not answer with a request; check the URL")
    return body
