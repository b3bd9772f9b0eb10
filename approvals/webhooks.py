"""Signed webhooks: the agent's ``callback_url`` hears about the final state of its request.

The event is queued in the outbox in the transaction that made the request final, so it is
never lost; the outbox retries it with backoff until the receiver answers 2xx. Every attempt
carries the same event id (receivers deduplicate on it) and a fresh timestamp, and is signed
with HMAC-SHA256 over ``"{timestamp}." + body`` with the agent's webhook secret:

    Signoff-Event-Id: evt_...
    Signoff-Timestamp: 1764194400
    Signoff-Signature: v1=<hex>[,v1=<hex of the previous secret, for a day after rotation>]

``signoff_client.verify_webhook`` checks all of it on the receiving side. Where a webhook
may go at all is :mod:`approvals.egress`'s decision: public addresses, and what
``webhooks.allow`` lists.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from approvals.access import AccessStore
from approvals.clock import Clock
from approvals.directory import Destination, DestinationKind
from approvals.egress import EgressPolicy, EgressRefused, GuardedTransport
from approvals.model import ApprovalRequest, public_json
from approvals.ports import DeliveryError, parse_retry_after
from approvals.receipts import ReceiptSigner

WEBHOOK_PLATFORM = "webhook"
EVENT_TYPE = "approval.final"
SIGNATURE_VERSION = "v1"
EVENT_ID_HEADER = "Signoff-Event-Id"
TIMESTAMP_HEADER = "Signoff-Timestamp"
SIGNATURE_HEADER = "Signoff-Signature"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_CALLBACK_URL_CHARS = 2048
_ERROR_SNIPPET_CHARS = 200


def new_event_id() -> str:
    return "evt_" + secrets.token_urlsafe(16)


def webhook_destination(request_id: str) -> Destination:
    """Each request's webhook is its own outbox destination: one slow receiver, or one failing
    event, never holds back another request's."""
    return Destination(WEBHOOK_PLATFORM, DestinationKind.ENDPOINT, request_id)


def signature_header(body: bytes, timestamp: int, signing_secrets: list[str]) -> str:
    """``v1=<hex>`` per secret, comma-separated."""
    signed = f"{timestamp}.".encode() + body
    return ",".join(
        f"{SIGNATURE_VERSION}="
        + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
        for secret in signing_secrets
    )


def callback_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback URL, or ``None``."""
    if len(url) > MAX_CALLBACK_URL_CHARS:
        return f"callback_url must be at most {MAX_CALLBACK_URL_CHARS} characters"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"callback_url is not a URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "callback_url must be an absolute http:// or https:// URL"
    if parsed.userinfo:
        return "callback_url must not carry a user name or password"
    return None


@dataclass(frozen=True)
class WebhookDelivered:
    """A receiver accepted the event."""

    url: str
    status_code: int
    event_id: str


class WebhookSender:
    """Posts final-state events to agents' callback URLs."""

    def __init__(
        self,
        access: AccessStore,
        signer: ReceiptSigner,
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._access = access
        self._signer = signer
        self._clock = clock
        self._http = http
        self.egress = egress or EgressPolicy()
        """Where webhooks may go (a config reload replaces it)."""

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        if self._http is not None:
            return await self._http.post(url, content=body, headers=headers)
        # A client per event: webhooks are one per request, and nothing outlives the call.
        # Redirects are not followed: the event goes where the agent said, or nowhere. The
        # transport connects only to addresses the egress policy allows.
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_SECONDS,
            follow_redirects=False,
            transport=GuardedTransport(self.egress),
        ) as http:
            return await http.post(url, content=body, headers=headers)

    async def event_body(self, request: ApprovalRequest, event_id: str) -> bytes:
        event: dict[str, Any] = {
            "event_id": event_id,
            "type": EVENT_TYPE,
            "approval": public_json(request),
            "receipt": await self._signer.sign(request),
        }
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def deliver(self, request: ApprovalRequest, event_id: str) -> WebhookDelivered:
        """One attempt; ``DeliveryError`` unless the receiver answers 2xx."""
        url = request.callback_url
        if not url:
            raise DeliveryError("the request has no callback_url", permanent=True)
        problem = callback_url_problem(url) or self.egress.url_problem(url)
        if problem:
            raise DeliveryError(problem, permanent=True)
        body = await self.event_body(request, event_id)
        timestamp = int(self._clock.now().timestamp())
        signing_secrets = await self._access.webhook_signing_secrets(request.agent)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "signoff-webhooks",
            EVENT_ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature_header(body, timestamp, signing_secrets),
        }
        try:
            response = await self._post(url, body, headers)
        except EgressRefused as exc:
            raise DeliveryError(f"POST {url} refused: {exc}", permanent=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"POST {url} failed: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc
        if 200 <= response.status_code < 300:
            return WebhookDelivered(url, response.status_code, event_id)
        snippet = response.text[:_ERROR_SNIPPET_CHARS]
        raw_retry_after = response.headers.get("Retry-After")
        raise DeliveryError(
            f"POST {url} answered {response.status_code}: {snippet}".rstrip(": "),
            # 410 Gone is the receiver's way of saying "stop".
            permanent=response.status_code == 410,
            retry_after=(
                parse_retry_after(raw_retry_after, default=timedelta(0))
                if raw_retry_after is not None
                else None
            ),
        )
