"""``Client``: the agent API from ordinary (blocking) Python code."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import httpx

from signoff_client import wire
from signoff_client.errors import ApiError, SignoffError
from signoff_client.models import Approval
from signoff_client.outcome import approved_or_raise
from signoff_client.verify import verify_receipt
from signoff_client.wire import Call, RetryHook, RetryPolicy


class Client:
    """A blocking client for one signoff server and one agent API key.

    Args:
        base_url: the server (default: ``$SIGNOFF_URL``, else ``http://127.0.0.1:8080``).
        api_key: the agent's key (default: ``$SIGNOFF_API_KEY``).
        long_poll_seconds: how long each wait asks the server to hold the answer (1-60).
        retry: which failures are retried and how long to pause in between.
        transport: an httpx transport, for proxies and tests.
        on_retry: called before every retry, to report it.

    Raises:
        ConfigurationError: without an API key, or with a URL that is not http(s).

    Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        long_poll_seconds: int = wire.DEFAULT_LONG_POLL_SECONDS,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = wire.USER_AGENT,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = wire.Settings.resolve(base_url, api_key)
        self.long_poll_seconds = wire.check_long_poll_seconds(long_poll_seconds)
        self.retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.settings.base_url,
            transport=transport,
            headers=self.settings.headers(user_agent),
            timeout=wire.timeout_for(0),
        )

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the agent API ---------------------------------------------------------------------

    def request(
        self,
        action: str,
        title: str,
        *,
        details: str | None = None,
        params: Mapping[str, Any] | None = None,
        requested_by: str | None = None,
        timeout_seconds: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Approval:
        """Ask for approval of ``action`` with exactly ``params``; returns the new request.

        A retried create carries the same idempotency key (one is made when not given), so
        network trouble never makes two requests. The request may already be final when a
        policy decides at once.
        """
        body = wire.create_body(
            action,
            title,
            details=details,
            params=params,
            requested_by=requested_by,
            timeout_seconds=timeout_seconds,
            callback_url=callback_url,
        )
        key = idempotency_key or wire.new_idempotency_key()
        return Approval.from_json(self.perform(wire.create_call(body, key)))

    def get(self, request_id: str) -> Approval:
        """The request's current state."""
        return Approval.from_json(self.perform(wire.get_call(request_id)))

    def wait(self, request_id: str, *, timeout: float | None = None) -> Approval:
        """Wait until the request is final, or until ``timeout`` seconds have passed.

        Waiting is a series of long-polls of at most ``long_poll_seconds`` each, so it can
        last hours. When ``timeout`` runs out first, the request is returned still
        ``pending`` (it is not cancelled); ``wait_approved`` raises instead. With a
        ``timeout`` the call keeps it, outages included: failed attempts are retried only
        while time is left, and it returns or raises at most ``wire.DEADLINE_GRACE`` late.

        Raises:
            SignoffError: the server could not be reached or answered with an error; its
                ``request_id`` names this request, which may still be pending.
        """
        return Approval.from_json(self.wait_json(request_id, timeout=timeout))

    def wait_approved(self, request_id: str, *, timeout: float | None = None) -> Approval:
        """Wait, then return the request if approved.

        Raises:
            Denied, Expired, Cancelled: the request was not approved.
            WaitTimeout: ``timeout`` ran out while it was still pending.
        """
        return approved_or_raise(self.wait(request_id, timeout=timeout))

    def cancel(self, request_id: str, reason: str | None = None) -> Approval:
        """Withdraw a pending request.

        Raises:
            ApiError: ``already_decided`` (409) when it was decided first.
        """
        try:
            return Approval.from_json(self.perform(wire.cancel_call(request_id, reason)))
        except ApiError as exc:
            if exc.status != 409:
                raise
            # A retry after a lost answer finds its own cancel done: that is success.
            current = self.get(request_id)
            if current.status == "cancelled":
                return current
            raise

    def list_approvals(self, *, status: str | None = None, limit: int = 100) -> list[Approval]:
        """This agent's requests, newest first, optionally only those with ``status``."""
        answer = self.perform(wire.list_call(status, limit))
        return [Approval.from_json(item) for item in answer.get("approvals", [])]

    def receipt(self, request_id: str) -> dict[str, Any]:
        """The signed receipt of a final request (``ApiError`` 409 ``not_final`` before)."""
        return self.perform(wire.receipt_call(request_id))

    def receipt_keys(self) -> dict[str, Any]:
        """The server's receipt public keys: ``{"keys": [...]}``."""
        return self.perform(wire.receipt_keys_call())

    def verified_receipt(
        self, request_id: str, action: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Fetch the keys and the receipt and check it approves exactly ``action`` + ``params``.

        Raises:
            ReceiptError: when it does not; never act then.
        """
        keys = self.receipt_keys()
        receipt = self.receipt(request_id)
        return verify_receipt(receipt, action, params, keys, request_id=request_id)

    # -- lower level -----------------------------------------------------------------------

    def wait_json(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """``wait``, returning the request JSON exactly as the server sent it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                hold = wire.next_slice(self.long_poll_seconds, remaining)
                started = time.monotonic()
                answer = self.perform(wire.get_call(request_id, hold), deadline=deadline)
                current = wire.check_request_json(answer, self.base_url)
                if current["status"] != "pending":
                    return current
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return current
                pause = wire.MIN_POLL_INTERVAL - (now - started)
                if pause > 0:
                    self._sleep(pause if deadline is None else min(pause, deadline - now))
        except SignoffError as exc:
            exc.request_id = request_id  # it exists: the caller can wait for it again
            raise

    def perform(
        self, call: Call, *, retry: RetryPolicy | None = None, deadline: float | None = None
    ) -> dict[str, Any]:
        """Make one API call, retrying what the retry policy allows; the JSON answered.

        With ``deadline`` (a ``time.monotonic()`` instant), no attempt starts after it and
        none runs past it by more than ``wire.DEADLINE_GRACE``: the last error is raised.
        """
        policy = retry or self.retry
        failures = 0
        while True:
            try:
                return self._perform_once(call, deadline)
            except SignoffError as exc:
                delay = wire.retry_delay(policy, exc, failures, deadline)
                if delay is None:
                    raise
                failures += 1
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
                self._sleep(delay)

    def _perform_once(self, call: Call, deadline: float | None) -> dict[str, Any]:
        try:
            response = self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                headers=call.headers,
                timeout=wire.timeout_for(call.hold_seconds, deadline),
            )
        except httpx.TransportError as exc:
            raise wire.network_error(exc, self.base_url) from exc
        return wire.read_answer(response, self.base_url)
