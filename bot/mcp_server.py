"""``signoff mcp``: the approval tools for a model, as an MCP server over stdio.

A model calls ``request_approval`` before a risky action; the tool waits a bounded time
for a person to decide (``--wait-seconds``: short for clients that give up on a call after
about 60 s, such as Claude Desktop; long for those that allow long calls, such as Claude
Code) and otherwise answers ``pending`` with the id, for ``get_approval`` to keep waiting.
No call takes longer than its bound, even while signoff is unreachable, and every answer
after a request was made names its id. The server is an agent like any other: it talks to
a running signoff with ``SIGNOFF_URL`` and ``SIGNOFF_API_KEY``; without a usable key it
still starts, and every tool call answers with what to set, so the person learns of it
through the model. Only the protocol goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

# pydantic builds the tools' output schemas, and on Python < 3.12 it reads a TypedDict
# nested in another (the listed approvals) only from typing_extensions (a pydantic dependency).
from typing_extensions import TypedDict

from bot import signoff_version
from bot.mcp_command import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS
from signoff_client import Approval, AsyncClient, SignoffError, wire
from signoff_client.errors import ApiError, ConfigurationError, NetworkError

SERVER_NAME = "signoff"
TIMEOUT_ACTOR = "timeout"
"""Who the server names as the decider when the deadline decided."""
INSTRUCTIONS = (
    "signoff puts a human between you and risky actions. Before an action that needs "
    "approval, call request_approval with the exact parameters you will use. Perform the "
    "action only if the status is 'approved', and only with exactly those parameters, "
    "or, when the answer has edited_params (an approver changed them), exactly those. "
    "'pending' means no decision yet: call get_approval with the id to keep waiting. "
    "'denied', 'expired' and 'cancelled' mean do not perform it. If a tool answers with "
    "an error, nothing was approved: do not perform the action; tell the user what the "
    "error says (it may name a setting to fix, or an id to ask about again later)."
)

REQUEST_DESCRIPTION = """Ask a human to approve an action before you perform it.

Give the machine name of the action (such as "db.drop_table"), a one-line title for the
approver, optional details, and in params the exact parameters you will use. The call waits
up to about {wait} seconds for a person to decide, then returns the request's status:
- "approved": you may perform exactly this action with exactly these params (anything
  different needs a new request); when edited_params is not null, an approver changed
  the params before approving: use exactly edited_params instead, never your original;
- "denied", "expired" or "cancelled": do NOT perform the action; tell the user, with the
  reason if one is given;
- "pending": nobody has decided yet. Call get_approval with the returned id to keep waiting,
  again and again, until the status is final. Never treat pending as approval.
Never perform the action unless the status is "approved"."""

GET_DESCRIPTION = """Wait for the decision on an approval request made with request_approval.

Waits up to about {wait} seconds, then returns the status, as request_approval does. While
it is "pending", call get_approval again with the same id (do not make a new request).
Perform the action only once the status is "approved"."""

LIST_DESCRIPTION = """List your approval requests that are still pending, newest first, with
their ids: to find a request whose id you lost (a call that timed out or was cancelled) before
asking again. Call get_approval with an id to wait for its decision. Asking again with
request_approval for exactly the same action and params also returns the pending request
instead of making a second one."""

CANCEL_DESCRIPTION = """Withdraw a pending approval request you no longer need (the plan
changed, or the user asked). Returns the request, now "cancelled"; an already decided request
cannot be cancelled and keeps its status. Never perform a cancelled action."""

log = logging.getLogger("signoff.mcp")


class ApprovalResult(TypedDict):
    """What every tool returns: the request's state and what the model should do next."""

    id: str
    status: str
    action: str
    title: str
    params: dict[str, Any]
    payload_sha256: str
    edited_params: dict[str, Any] | None
    edited_payload_sha256: str | None
    deadline: str
    decided_by: str | None
    reason: str | None
    next_step: str


class PendingList(TypedDict):
    """What ``list_pending_approvals`` returns."""

    approvals: list[ApprovalResult]
    next_step: str


LISTED_AT_MOST = 100
"""The newest pending requests ``list_pending_approvals`` names."""


def result_for(approval: Approval) -> ApprovalResult:
    """The tool result for ``approval``: who decided and what to do next come from its
    decision, for every final status (the people who approved, the person who denied, or
    nobody for a timeout, a policy's own decision and a cancel)."""
    decision = approval.decision
    reason = decision.reason if decision else None
    return {
        "id": approval.id,
        "status": approval.status,
        "action": approval.action,
        "title": approval.title,
        "params": approval.params,
        "payload_sha256": approval.payload_sha256,
        "edited_params": approval.edited_params,
        "edited_payload_sha256": approval.edited_payload_sha256,
        "deadline": approval.deadline.isoformat(),
        "decided_by": ", ".join(approval.deciders) or None,
        "reason": reason,
        "next_step": next_step(approval),
    }


def next_step(approval: Approval) -> str:
    """What the model should do now, naming who decided and why (text for a model)."""
    decision = approval.decision
    if approval.status == "pending" or decision is None:
        return (
            f"No decision yet (the approvers have until {approval.deadline.isoformat()}). "
            f"Call get_approval with id {approval.id!r} to keep waiting. Do NOT perform "
            "the action until the status is 'approved'."
        )
    because = f": {decision.reason}" if decision.reason else ""
    people = ", ".join(approval.deciders)
    if approval.status == "approved":
        if people:
            who = f"Approved by {people}{because}"
        else:
            who = f"Approved without a person deciding ({decision.by}{because})"
        if approval.edited_params is not None:
            edited = json.dumps(approval.edited_params, ensure_ascii=False, sort_keys=True)
            return (
                f"{who}, with the params EDITED by the approvers. Perform this action only "
                f"with exactly edited_params ({edited}), NOT the params you asked with; "
                "anything different needs a new request."
            )
        return (
            f"{who}. You may now perform exactly this action with exactly these params; "
            "anything different needs a new request."
        )
    if approval.status == "denied":
        if people:
            who = f"Denied by {people}{because}"
        elif decision.by == TIMEOUT_ACTOR:
            who = "Nobody decided before the deadline, and the policy denies what nobody approves"
        else:
            who = f"Denied without a person deciding ({decision.by}{because})"
        return f"{who}. Do NOT perform the action; tell the user."
    if approval.status == "expired":
        return "Nobody decided in time; the request expired. Do NOT perform the action."
    return f"The request was cancelled by {decision.by}{because}. Do NOT perform the action."


class SignoffTools:
    """The four tools, over one ``AsyncClient``; client errors become tool errors that the
    model reads (such as "not_found" for a wrong id), naming the request once it exists.

    Without a client (``setup_error`` says why: no API key, a bad URL), every tool answers
    with that error and what to set.
    """

    def __init__(
        self,
        client: AsyncClient | None,
        *,
        wait_seconds: int = DEFAULT_WAIT_SECONDS,
        setup_error: str | None = None,
    ) -> None:
        self._api = client
        self._wait_seconds = wait_seconds
        self._setup_error = setup_error or "no signoff client"

    def _client(self) -> AsyncClient:
        if self._api is None:
            raise ToolError(
                f"signoff is not set up, so nothing can be approved: {self._setup_error}. "
                f"Set {wire.KEY_VARIABLE} (and {wire.URL_VARIABLE} when signoff is not at "
                f"{wire.DEFAULT_URL}) in the environment of the MCP server 'signoff mcp', then "
                "restart it. Do NOT perform actions that need approval; tell the user."
            )
        return self._api

    async def request_approval(
        self,
        action: str,
        title: str,
        details: str = "",
        params: dict[str, Any] | None = None,
        timeout_seconds: int | None = None,
    ) -> ApprovalResult:
        client = self._client()
        deadline = time.monotonic() + self._wait_seconds  # one bound for the whole call
        try:
            body = wire.create_body(
                action,
                title,
                details=details or None,
                params=params or {},
                requested_by=None,
                timeout_seconds=timeout_seconds,
                callback_url=None,
            )
            # As ``AsyncClient.request`` does, but retried only within this call's bound.
            create = wire.create_call(body, wire.new_idempotency_key())
            asked = Approval.from_json(await client.perform(create, deadline=deadline))
        except SignoffError as exc:
            raise ToolError(self._failure(exc, None)) from exc
        log.info("asked %s for %s", asked.id, action)
        return await self._wait(asked.id, deadline)

    async def get_approval(self, id: str) -> ApprovalResult:
        return await self._wait(id, time.monotonic() + self._wait_seconds)

    async def list_pending_approvals(self) -> PendingList:
        client = self._client()
        try:
            pending = await client.list_approvals(status="pending", limit=LISTED_AT_MOST)
        except SignoffError as exc:
            raise ToolError(f"could not list the pending requests: {exc}.") from exc
        if pending:
            step = (
                "Call get_approval with the id of the request you are waiting for; do not "
                "make a new request for the same action. Perform nothing until its status "
                "is 'approved'."
            )
        else:
            step = "No request of yours is pending."
        return {"approvals": [result_for(approval) for approval in pending], "next_step": step}

    async def cancel_approval(self, id: str, reason: str | None = None) -> ApprovalResult:
        client = self._client()
        try:
            return result_for(await client.cancel(id, reason))
        except SignoffError as exc:
            raise ToolError(self._failure(exc, id)) from exc

    async def _wait(self, request_id: str, deadline: float) -> ApprovalResult:
        client = self._client()
        try:
            left = max(deadline - time.monotonic(), 0.0)
            return result_for(await client.wait(request_id, timeout=left))
        except SignoffError as exc:
            raise ToolError(self._failure(exc, request_id)) from exc
        except anyio.get_cancelled_exc_class():
            # The client cancelled the call (its own timeout, or the person stopped it):
            # the SDK cancels this wait and sends no answer. The request stays pending for
            # a later get_approval, list_pending_approvals or the same ask again.
            log.warning(
                "the call waiting for request %s was cancelled; the request stays pending",
                request_id,
            )
            raise

    def _failure(self, exc: SignoffError, request_id: str | None) -> str:
        """The tool error for ``exc``: what happened, and what to do with the id if any."""
        unreachable = isinstance(exc, NetworkError) or (isinstance(exc, ApiError) and exc.retryable)
        if request_id is None:
            text = f"the approval request was not made: {exc}."
            if unreachable:
                text += f" {self._where()}"
            return text + " Nothing is approved: do NOT perform the action."
        text = str(exc)
        if not unreachable:
            if request_id not in text:
                text = f"request {request_id}: {text}"
            return f"{text}. Do NOT perform the action."
        detail = exc.args[0] if exc.args else text  # without the "while waiting" suffix
        return (
            f"request {request_id} is pending as far as signoff last said, and signoff is "
            f"unreachable now ({detail}). Call get_approval with id {request_id!r} when it is "
            f"back; do not make a new request. {self._where()} Do NOT perform the action "
            "until the status is 'approved'."
        )

    def _where(self) -> str:
        url = self._api.base_url if self._api is not None else wire.DEFAULT_URL
        return (
            f"Check that signoff is running at {url} ({wire.URL_VARIABLE} of this MCP "
            "server) and reachable from here."
        )


def build_server(
    client: AsyncClient | None,
    *,
    wait_seconds: int = DEFAULT_WAIT_SECONDS,
    setup_error: str | None = None,
) -> MCPServer:
    """The MCP server with the approval tools, talking to signoff through ``client`` (None:
    every tool answers ``setup_error``)."""
    tools = SignoffTools(client, wait_seconds=wait_seconds, setup_error=setup_error)
    server: MCPServer = MCPServer(
        SERVER_NAME, instructions=INSTRUCTIONS, version=signoff_version(), log_level="WARNING"
    )
    server.add_tool(
        tools.request_approval,
        name="request_approval",
        title="Ask a human for approval",
        description=REQUEST_DESCRIPTION.format(wait=wait_seconds),
    )
    server.add_tool(
        tools.get_approval,
        name="get_approval",
        title="Wait for an approval decision",
        description=GET_DESCRIPTION.format(wait=wait_seconds),
    )
    server.add_tool(
        tools.list_pending_approvals,
        name="list_pending_approvals",
        title="List your pending approval requests",
        description=LIST_DESCRIPTION,
    )
    server.add_tool(
        tools.cancel_approval,
        name="cancel_approval",
        title="Withdraw an approval request",
        description=CANCEL_DESCRIPTION,
    )
    return server


async def _serve_stdio(wait_seconds: int) -> None:
    try:
        client = AsyncClient(user_agent="signoff-mcp")
    except ConfigurationError as exc:
        # Exiting would only mark the server failed in the MCP client, and the model would
        # go on without approval tools; serving the error tells the person through it.
        log.warning("%s; every tool call answers with this until it is set", exc)
        server = build_server(None, wait_seconds=wait_seconds, setup_error=str(exc))
        await server.run_stdio_async()
        return
    async with client:
        await build_server(client, wait_seconds=wait_seconds).run_stdio_async()


def serve(*, wait_seconds: int = DEFAULT_WAIT_SECONDS) -> int:
    """Run the MCP server on stdin/stdout until the client closes it; the exit code (2 for
    a ``wait_seconds`` out of range; a missing key or an unreachable server is not fatal)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="signoff mcp: %(message)s")
    if not 1 <= wait_seconds <= MAX_WAIT_SECONDS:
        print(f"signoff mcp: --wait-seconds must be 1 to {MAX_WAIT_SECONDS}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in a terminal: just stop
        anyio.run(_serve_stdio, wait_seconds)
    return 0
