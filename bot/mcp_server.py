"""``signoff mcp``: the approval tools for a model, as an MCP server over stdio.

A model calls ``request_approval`` before a risky action; the tool waits a bounded time
for a person to decide (MCP clients give up on a call after about 60 s) and otherwise
answers ``pending`` with the id, for ``get_approval`` to keep waiting. The server is an
agent like any other: it talks to a running signoff with ``SIGNOFF_URL`` and
``SIGNOFF_API_KEY``. Only the protocol goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, TypedDict

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from approvals.client import Approval, AsyncClient, SignoffError
from approvals.client.errors import ConfigurationError
from approvals.client.wire import Settings

DEFAULT_WAIT_SECONDS = 50
"""How long one tool call waits for a decision: under the ~60 s MCP clients allow a call."""
MAX_WAIT_SECONDS = 55
SERVER_NAME = "signoff"
TIMEOUT_ACTOR = "timeout"
"""Who the server names as the decider when the deadline decided."""
INSTRUCTIONS = (
    "signoff puts a human between you and risky actions. Before an action that needs "
    "approval, call request_approval with the exact parameters you will use. Perform the "
    "action only if the status is 'approved', and only with exactly those parameters. "
    "'pending' means no decision yet: call get_approval with the id to keep waiting. "
    "'denied', 'expired' and 'cancelled' mean do not perform it."
)

REQUEST_DESCRIPTION = """Ask a human to approve an action before you perform it.

Give the machine name of the action (such as "db.drop_table"), a one-line title for the
approver, optional details, and in params the exact parameters you will use. The call waits
up to about {wait} seconds for a person to decide, then returns the request's status:
- "approved": you may perform exactly this action with exactly these params (anything
  different needs a new request);
- "denied", "expired" or "cancelled": do NOT perform the action; tell the user, with the
  reason if one is given;
- "pending": nobody has decided yet. Call get_approval with the returned id to keep waiting,
  again and again, until the status is final. Never treat pending as approval.
Never perform the action unless the status is "approved"."""

GET_DESCRIPTION = """Wait for the decision on an approval request made with request_approval.

Waits up to about {wait} seconds, then returns the status, as request_approval does. While
it is "pending", call get_approval again with the same id (do not make a new request).
Perform the action only once the status is "approved"."""

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
    deadline: str
    decided_by: str | None
    reason: str | None
    next_step: str


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
    """The three tools, over one ``AsyncClient``; client errors become tool errors that the
    model reads (such as "not_found" for a wrong id)."""

    def __init__(self, client: AsyncClient, *, wait_seconds: int = DEFAULT_WAIT_SECONDS) -> None:
        self._client = client
        self._wait_seconds = wait_seconds

    async def request_approval(
        self,
        action: str,
        title: str,
        details: str = "",
        params: dict[str, Any] | None = None,
        timeout_seconds: int | None = None,
    ) -> ApprovalResult:
        try:
            asked = await self._client.request(
                action,
                title,
                details=details or None,
                params=params or {},
                timeout_seconds=timeout_seconds,
            )
            log.info("asked %s for %s", asked.id, action)
            return result_for(await self._client.wait(asked.id, timeout=self._wait_seconds))
        except SignoffError as exc:
            raise ToolError(str(exc)) from exc

    async def get_approval(self, id: str) -> ApprovalResult:
        try:
            return result_for(await self._client.wait(id, timeout=self._wait_seconds))
        except SignoffError as exc:
            raise ToolError(str(exc)) from exc

    async def cancel_approval(self, id: str, reason: str | None = None) -> ApprovalResult:
        try:
            return result_for(await self._client.cancel(id, reason))
        except SignoffError as exc:
            raise ToolError(str(exc)) from exc


def build_server(client: AsyncClient, *, wait_seconds: int = DEFAULT_WAIT_SECONDS) -> MCPServer:
    """The MCP server with the approval tools, talking to signoff through ``client``."""
    tools = SignoffTools(client, wait_seconds=wait_seconds)
    server: MCPServer = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, log_level="WARNING")
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
        tools.cancel_approval,
        name="cancel_approval",
        title="Withdraw an approval request",
        description=CANCEL_DESCRIPTION,
    )
    return server


async def _serve_stdio(wait_seconds: int) -> None:
    async with AsyncClient(user_agent="signoff-mcp") as client:
        await build_server(client, wait_seconds=wait_seconds).run_stdio_async()


def serve(*, wait_seconds: int = DEFAULT_WAIT_SECONDS) -> int:
    """Run the MCP server on stdin/stdout until the client closes it; the exit code."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="signoff mcp: %(message)s")
    if not 1 <= wait_seconds <= MAX_WAIT_SECONDS:
        print(f"signoff mcp: --wait-seconds must be 1 to {MAX_WAIT_SECONDS}", file=sys.stderr)
        return 2
    try:
        Settings.resolve(None, None)  # fail now, not on the model's first call
    except ConfigurationError as exc:
        print(f"signoff mcp: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in a terminal: just stop
        anyio.run(_serve_stdio, wait_seconds)
    return 0
