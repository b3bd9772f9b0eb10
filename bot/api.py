"""The agent API under ``/v1``: create, read (with a bounded long-poll), list, cancel, and
the signed receipts of final requests with the keys that verify them.

Agents authenticate with a bearer API key (``signoff agents add``). Every error is JSON,
``{"error": {"code", "message"}}``, and user input never causes a 5xx.
"""

import fnmatch
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from approvals.access import AccessStore, KeyHolder
from approvals.machine import Status
from approvals.model import ApprovalRequest, CreateCommand, public_json
from approvals.outcomes import AlreadyDecided, Applied, Created, NotAllowed, NotFound, RefusalCode
from approvals.receipts import ReceiptNotFinal, ReceiptSigner
from approvals.service import ApprovalService
from approvals.webhooks import MAX_CALLBACK_URL_CHARS, WebhookSender, callback_url_problem
from bot.errors import ApiError
from bot.limits import FailureGuard, RateLimit, RateLimiter
from bot.logging_setup import remember_secret
from bot.waiters import RequestWaiters
from config import SignoffSettings

MAX_WAIT_SECONDS = 60
FAILED_AUTH_LIMIT = RateLimit(rate=2, burst=30)
"""Bad API keys tolerated per client address: 30 at once, then 2 a second."""
MAX_CREATES_IN_FLIGHT = 64
"""Creates this process works on at once. More are refused with 429 ``busy`` at once:
past the database's pace they would only queue up, and every agent would wait longer.
At the ~70 durable creates a second one SQLite process manages on 2 cores, 64 in flight is
about a second of queue: enough to absorb bursts, short enough to keep answers prompt."""
BUSY_RETRY_AFTER = 1
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600
MAX_PARAMS_DEPTH = 32
MAX_LIST_LIMIT = 500
NO_NUL = r"^[^\x00]*$"  # databases cannot store U+0000 in text
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]+$"  # visible ASCII
_REQUEST_ID = r"^[A-Za-z0-9_-]{1,64}$"
# Scheme, host name or IPv4, optional port, then any visible ASCII: documented in the schema,
# so what the schema admits is exactly what is accepted.
CALLBACK_URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$"


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error the API returns."""

    error: ErrorBody


class CreateApproval(BaseModel):
    """An agent's request for approval."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
        description="Machine name of the action, such as `db.drop_table`.",
    )
    title: str = Field(
        min_length=1,
        max_length=500,
        # Something other than whitespace; \x1c-\x1f count as whitespace to Python too.
        pattern=r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$",
        description="One line for humans.",
    )
    details: str = Field(default="", max_length=20_000, pattern=NO_NUL)
    params: dict[str, Any] = Field(
        default_factory=dict, description="The exact payload to approve (a JSON object)."
    )
    requested_by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="The human the agent acts for.",
    )
    timeout_seconds: int | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS)
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CALLBACK_URL_CHARS,
        pattern=CALLBACK_URL_PATTERN,
        description=(
            "An http(s) URL (host name or IPv4 address, visible ASCII) that gets a signed POST "
            "(HMAC-SHA256 with the agent's webhook secret) when the request becomes final; "
            "retried until it answers 2xx."
        ),
    )

    @field_validator("callback_url")
    @classmethod
    def _usable_callback(cls, value: str | None) -> str | None:
        if value is not None and (problem := callback_url_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("timeout_seconds", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        # JSON true would otherwise pass as a timeout of one second.
        if isinstance(value, bool):
            raise ValueError("timeout_seconds must be a whole number of seconds, not true/false")
        return value

    @field_validator("params")
    @classmethod
    def _not_too_deep(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value) > MAX_PARAMS_DEPTH:
            raise ValueError(f"params may nest at most {MAX_PARAMS_DEPTH} levels")
        return value


class ReceiptGrant(BaseModel):
    grant_id: str = Field(alias="id")
    given_by: list[str]
    given_at: str
    until: str


class SignedReceipt(BaseModel):
    receipt_id: str = Field(alias="id")
    payload_sha256: str
    status: Literal["approved", "denied", "expired", "cancelled"]
    deciders: list[str]
    decided_at: str
    expires: str
    edited: bool | None = Field(
        default=None,
        description="Present (true) only when approvers edited the params before approving.",
    )
    original_payload_sha256: str | None = Field(
        default=None,
        description=(
            "With `edited`: the hash of the payload the agent asked for; `payload_sha256` is "
            "the edited one, which the receipt binds."
        ),
    )
    grant: ReceiptGrant | None = Field(
        default=None,
        description=(
            "Present only when a time-boxed grant approved the request at once: the grant, "
            "who gave it (also `deciders`), when, and until when it lasts."
        ),
    )


class ReceiptOut(BaseModel):
    """A final request's Ed25519-signed receipt (signature over the canonical JSON of
    ``receipt``)."""

    receipt: SignedReceipt
    key_id: str
    alg: Literal["Ed25519"]
    signature: str = Field(description="Base64url (no padding) Ed25519 signature.")


class ReceiptKeyOut(BaseModel):
    key_id: str
    alg: Literal["Ed25519"]
    public_key: str = Field(description="Base64url (no padding) raw 32-byte Ed25519 key.")
    created_at: str
    active: bool = Field(description="Whether this key signs new receipts.")


class ReceiptKeysOut(BaseModel):
    keys: list[ReceiptKeyOut]


class CancelApproval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


class VoteOut(BaseModel):
    person: str
    verdict: Literal["approve", "deny"]
    platform: str
    reason: str | None
    cast_at: datetime
    payload_sha256: str | None = Field(
        default=None,
        description="The payload the person voted on: the original, or an approver's edit.",
    )
    grant_seconds: int | None = Field(
        default=None,
        description='An approval "for a while": the length of the grant the person asked for.',
    )


class GrantOut(BaseModel):
    grant_id: str = Field(alias="id")
    given_by: list[str]
    given_at: datetime
    until: datetime


class DecisionOut(BaseModel):
    verdict: Literal["approved", "denied", "expired", "cancelled"]
    by: str
    platform: str
    reason: str | None
    grant: GrantOut | None = Field(
        default=None,
        description=(
            "A time-boxed grant: the one that approved the request at once (`platform` is "
            "`grant`), or the one this approval gave (`platform` is where it was given)."
        ),
    )


class ApprovalOut(BaseModel):
    """A request as agents see it."""

    id: str
    status: Literal["pending", "approved", "denied", "expired", "cancelled"]
    action: str
    title: str
    details: str
    params: dict[str, Any]
    payload_sha256: str
    requested_by: str | None
    policy: str
    level: int
    created_at: datetime
    deadline: datetime
    decided_at: datetime | None
    decision: DecisionOut | None
    votes: list[VoteOut]
    edited_params: dict[str, Any] | None = Field(
        default=None,
        description=(
            "When approved with edits: the params an approver changed them to, which are what "
            "was approved (run these, not `params`); null otherwise."
        ),
    )
    edited_payload_sha256: str | None = Field(
        default=None,
        description=(
            "When approved with edits: the hash of the edited payload, which the receipt "
            "binds; null otherwise."
        ),
    )


class ApprovalList(BaseModel):
    approvals: list[ApprovalOut]


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_PARAMS_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}


class AgentApi:
    """Builds the ``/v1`` router around the running service."""

    def __init__(
        self,
        *,
        service: ApprovalService,
        access: AccessStore,
        waiters: RequestWaiters,
        receipts: ReceiptSigner,
        limiter: RateLimiter,
        settings: SignoffSettings,
        webhooks: WebhookSender,
        failures: FailureGuard | None = None,
    ) -> None:
        self._service = service
        self._access = access
        self._waiters = waiters
        self._receipts = receipts
        self.limiter = limiter
        """Per-agent and overall call limits (a config reload may change them)."""
        self._failures = failures or FailureGuard(FAILED_AUTH_LIMIT)
        self._webhooks = webhooks  # its egress policy also judges callback URLs at create
        self.settings = settings
        self._creates_in_flight = 0

    async def authenticate(
        self,
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> str:
        """The agent behind the bearer key; 401 without a valid key, 403 if not configured."""
        holder = await self._admit(request, authorization, self._access.key_holder)
        return holder.agent

    async def authenticate_to_confirm(
        self,
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> KeyHolder:
        """As :meth:`authenticate`, for a create: a key this process found live before is
        not read again here, because the create's own transaction confirms it (a revoked
        key then gets the same 401, and nothing is created)."""
        return await self._admit(request, authorization, self._access.key_holder_to_confirm)

    async def _admit(
        self,
        request: Request,
        authorization: str | None,
        holder_of: Callable[[str], Awaitable[KeyHolder | None]],
    ) -> KeyHolder:
        client = request.client.host if request.client else "unknown"
        wait = self._failures.retry_after(client)
        if wait:
            raise ApiError(
                429,
                "too_many_failed_attempts",
                f"too many requests with bad API keys from {client}; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            self._failures.failed(client)
            raise ApiError(401, "unauthorized", "send an agent API key: Authorization: Bearer KEY")
        holder = await holder_of(key.strip())
        if holder is None:
            self._failures.failed(client)
            raise ApiError(401, "unauthorized", "the API key is unknown or revoked")
        # A key that works is a secret worth keeping out of logs; unknown keys are not kept,
        # so a flood of made-up keys cannot grow the set.
        remember_secret(key.strip())
        agent = holder.agent
        if agent not in self.settings.agents:
            raise ApiError(
                403, "agent_not_configured", f"agent {agent!r} is not configured under agents:"
            )
        retry_after = self.limiter.check(agent)
        if retry_after:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        return holder

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/v1", tags=["approvals"], responses=ERROR_RESPONSES)
        agent_dependency = Depends(self.authenticate)
        request_id_path = Path(pattern=_REQUEST_ID, description="The request id.")

        @router.post(
            "/approvals",
            status_code=201,
            response_model=ApprovalOut,
            responses={
                200: {
                    "model": ApprovalOut,
                    "description": "No new request: an idempotent replay, or the identical "
                    "request this agent already has pending.",
                }
            },
            summary="Ask for approval",
        )
        async def create_approval(
            body: CreateApproval,
            request: Request,
            response: Response,
            holder: Annotated[KeyHolder, Depends(self.authenticate_to_confirm)],
            idempotency_key: Annotated[
                str | None,
                Header(
                    alias="Idempotency-Key",
                    min_length=1,
                    max_length=200,
                    pattern=IDEMPOTENCY_KEY_PATTERN,
                    description="Retrying with the same key returns the first request.",
                ),
            ] = None,
        ) -> dict[str, Any]:
            agent = holder.agent
            allowed = self.settings.agents[agent].allow
            if not any(fnmatch.fnmatchcase(body.action, pattern) for pattern in allowed):
                raise ApiError(
                    403,
                    "action_not_allowed",
                    f"agent {agent!r} may not request {body.action!r} (allowed: "
                    f"{', '.join(allowed)})",
                )
            if body.callback_url is not None and (
                problem := self._webhooks.egress.url_problem(body.callback_url)
            ):
                raise ApiError(403, "callback_url_not_allowed", problem)
            command = CreateCommand(
                agent=agent,
                action=body.action,
                title=body.title,
                details=body.details,
                params=body.params,
                requested_by=body.requested_by,
                timeout=(timedelta(seconds=body.timeout_seconds) if body.timeout_seconds else None),
                idempotency_key=idempotency_key,
                callback_url=body.callback_url,
                max_open=self.settings.agents[agent].max_open,
                agent_key_id=holder.key_id,
            )
            if self._creates_in_flight >= MAX_CREATES_IN_FLIGHT:
                self.limiter.refund(agent)
                raise ApiError(
                    429,
                    "busy",
                    f"signoff is working on {self._creates_in_flight} requests; retry in "
                    f"{BUSY_RETRY_AFTER} s",
                    headers={"Retry-After": str(BUSY_RETRY_AFTER)},
                )
            self._creates_in_flight += 1
            try:
                outcome = await self._service.create(command)
            finally:
                self._creates_in_flight -= 1
            if isinstance(outcome, Created):
                if not outcome.is_new:
                    response.status_code = 200
                return public_json(outcome.request)
            if outcome.code is RefusalCode.IDEMPOTENCY_CONFLICT:
                raise ApiError(409, outcome.code.value, outcome.message)
            if outcome.code is RefusalCode.KEY_REVOKED:
                self._access.forget_key(holder.key_id)
                self._failures.failed(request.client.host if request.client else "unknown")
                raise ApiError(401, "unauthorized", outcome.message)
            if outcome.code is RefusalCode.TOO_MANY_OPEN:
                raise ApiError(
                    429, outcome.code.value, outcome.message, headers={"Retry-After": "30"}
                )
            raise ApiError(422, outcome.code.value, outcome.message)

        @router.get("/approvals/{request_id}", response_model=ApprovalOut, summary="Get one")
        async def get_approval(
            agent: Annotated[str, agent_dependency],
            request_id: Annotated[str, request_id_path],
            wait: Annotated[
                int,
                Query(
                    ge=0,
                    le=MAX_WAIT_SECONDS,
                    description="Seconds to wait for a final state (long-poll, at most 60).",
                ),
            ] = 0,
        ) -> dict[str, Any]:
            request = await self._own(agent, request_id)
            if wait and not request.status.is_final:
                request = await self._waiters.wait_final(request_id, wait) or request
            return public_json(request)

        @router.get("/approvals", response_model=ApprovalList, summary="List own requests")
        async def list_approvals(
            agent: Annotated[str, agent_dependency],
            status: Annotated[
                Literal["pending", "approved", "denied", "expired", "cancelled"] | None, Query()
            ] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
        ) -> dict[str, Any]:
            async with self._service.store.read() as reader:
                requests = await reader.list_requests(
                    agent=agent, status=Status(status) if status else None, limit=limit
                )
            return {"approvals": [public_json(r) for r in requests]}

        @router.post("/approvals/{request_id}/cancel", response_model=ApprovalOut, summary="Cancel")
        async def cancel_approval(
            agent: Annotated[str, agent_dependency],
            request_id: Annotated[str, request_id_path],
            body: CancelApproval | None = None,
        ) -> dict[str, Any]:
            outcome = await self._service.cancel(
                request_id, agent, body.reason if body is not None else None
            )
            if isinstance(outcome, Applied):
                return public_json(outcome.request)
            if isinstance(outcome, AlreadyDecided):
                raise ApiError(409, "already_decided", outcome.message)
            if isinstance(outcome, NotFound):
                raise ApiError(404, "not_found", outcome.message)
            assert isinstance(outcome, NotAllowed)
            raise ApiError(403, outcome.code.value, outcome.message)

        @router.get(
            "/approvals/{request_id}/receipt",
            response_model=ReceiptOut,
            response_model_by_alias=True,
            # The signed object goes out exactly as signed: the edit fields only when set.
            response_model_exclude_unset=True,
            summary="Signed receipt of a final request",
        )
        async def get_receipt(
            agent: Annotated[str, agent_dependency],
            request_id: Annotated[str, request_id_path],
        ) -> dict[str, Any]:
            request = await self._own(agent, request_id)
            try:
                return await self._receipts.sign(request)
            except ReceiptNotFinal as exc:
                raise ApiError(409, "not_final", str(exc)) from exc

        @router.get(
            "/receipt-keys", response_model=ReceiptKeysOut, summary="Receipt verification keys"
        )
        async def receipt_keys(agent: Annotated[str, agent_dependency]) -> dict[str, Any]:
            return {"keys": [key.to_json() for key in await self._receipts.keys()]}

        return router

    async def _own(self, agent: str, request_id: str) -> ApprovalRequest:
        request = await self._service.get(request_id)
        if request is None or request.agent != agent:
            raise ApiError(404, "not_found", f"no request with id {request_id!r}")
        return request
