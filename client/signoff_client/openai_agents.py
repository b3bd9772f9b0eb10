"""Gate OpenAI Agents SDK tool calls on a decision made in signoff.

The SDK pauses a run at a tool call whose ``needs_approval`` says so, and resumes it from a
``RunState`` once each paused call is approved or rejected. This module fills both ends::

    from agents import Agent, Runner, function_tool
    from signoff_client import AsyncClient
    from signoff_client.openai_agents import needs_approval, resolve_interruptions

    signoff = AsyncClient()  # SIGNOFF_URL, SIGNOFF_API_KEY

    @function_tool(needs_approval=needs_approval("drop_table", signoff))
    def drop_table(table: str) -> str: ...

    result = await Runner.run(agent, "clean up")
    while result.interruptions:  # calls signoff did not approve at once
        state = await resolve_interruptions(result, signoff)  # waits for the people
        result = await Runner.run(agent, state)

- ``needs_approval`` files the call with signoff the moment the model makes it. A call a
  policy approves at once (``decision: approve``) runs without a pause; any other call
  pauses the run (``True``), and so does an error reaching signoff.
- ``resolve_interruptions`` asks signoff about each paused call *with the same request*:
  the idempotency key is made from the call's ``call_id``, so the request filed by
  ``needs_approval`` is found again, and a run resumed from JSON in another process never
  makes a second request. It waits for each decision and approves or rejects the call in
  the state; a call is approved only when the request's signed receipt, checked with the
  server's keys, approves exactly its action and arguments. It fails closed: a denial, an
  expiry, a cancel, an error, or no decision within ``timeout`` rejects the call, and the
  model reads why.
- The SDK cannot run other arguments than the model's. An approval with edited params is
  therefore a rejection whose message names the approved arguments, so the model can call
  the tool again with exactly those (a new request, which the approvers see once more).

Call ids are unique per call with OpenAI's models. A model that repeats ids across runs
(some proxies number calls ``call_0``, ``call_1``...) needs a ``scope``, such as the
conversation's id, on both ends: else a later call could find an earlier request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents import (
    FunctionTool,
    RunContextWrapper,
    RunResult,
    RunResultStreaming,
    RunState,
    ToolApprovalItem,
)

from signoff_client._tool_calls import MAX_TITLE_CHARS as MAX_TITLE_CHARS
from signoff_client._tool_calls import (
    afinal_or_withdrawn,
    approved_with_changes,
    final_or_withdrawn,
    not_approved,
    not_obtained,
)
from signoff_client._tool_calls import call_title as call_title
from signoff_client._tool_calls import idempotency_key as idempotency_key
from signoff_client.aio import AsyncClient
from signoff_client.errors import SignoffError
from signoff_client.models import Approval
from signoff_client.sync import Client

ACTION_PREFIX = "openai-agents"
"""Actions are named ``openai-agents.<tool name>``: match them in policies."""

logger = logging.getLogger(__name__)

NeedsApproval = Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]
"""What ``function_tool(needs_approval=...)`` takes."""


@dataclass(frozen=True)
class ToolCallRequest:
    """What signoff is asked about one tool call; the same for both ends, so that the
    request ``needs_approval`` filed is found again by ``resolve_interruptions``."""

    tool_name: str
    action: str
    title: str
    params: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True)
class ToolCallVerdict:
    """What to do with a paused call: approve it, or reject it with ``message``, which
    the model reads as the call's output."""

    approved: bool
    message: str | None = None


@dataclass(frozen=True)
class Filed:
    """A paused call's request, as signoff answered the ask."""

    asked: ToolCallRequest
    approval: Approval


def describe_call(
    tool_name: str,
    params: Mapping[str, Any],
    call_id: str,
    *,
    scope: str = "",
    action_prefix: str = ACTION_PREFIX,
) -> ToolCallRequest:
    """The signoff request for one call of ``tool_name`` with ``params``."""
    return ToolCallRequest(
        tool_name=tool_name,
        action=f"{action_prefix}.{tool_name}",
        title=call_title(tool_name, params),
        params=dict(params),
        idempotency_key=idempotency_key(action_prefix, scope, call_id),
    )


def verdict_for(approval: Approval, tool_name: str) -> ToolCallVerdict:
    """Approve only an approved request with unchanged params; reject anything else, saying
    who decided and why."""
    if approval.status == "approved" and approval.edited_params is None:
        return ToolCallVerdict(approved=True)
    if approval.status == "approved":
        message = approved_with_changes(approval, tool_name)
    else:
        message = not_approved(approval, tool_name)
    return ToolCallVerdict(approved=False, message=f"Not run: {message}")


def verdict_for_error(error: Exception, tool_name: str) -> ToolCallVerdict:
    """Reject a call whose approval could not be had."""
    return ToolCallVerdict(
        approved=False,
        message=f"Not run: {not_obtained(error, tool_name)}",
    )


def needs_approval(
    tool_name: str,
    client: AsyncClient | Client,
    *,
    scope: str = "",
    action_prefix: str = ACTION_PREFIX,
) -> NeedsApproval:
    """A ``needs_approval`` callable for the function tool named ``tool_name``.

    It files each call with signoff at once and answers ``False`` (run it) only when a
    policy approved it then and there and the signed receipt covers exactly this call;
    otherwise ``True`` (pause), errors included.
    ``tool_name`` must be the tool's name (``gate`` sets it for you): the resolver names the
    request from the paused call, and a different name would not find this request.
    """

    async def file_with_signoff(
        _context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
    ) -> bool:
        asked = describe_call(tool_name, params, call_id, scope=scope, action_prefix=action_prefix)
        try:
            approval = await _ask(client, asked)
            if not approval.approved or approval.edited_params is not None:
                return True
            await _check_receipt(client, approval.id, asked)
        except SignoffError as exc:
            # Pausing is the safe answer; resolve_interruptions asks again and reports.
            logger.warning("signoff could not be asked about %s: %s", asked.title, exc)
            return True
        return False

    return file_with_signoff


def gate(
    tool: FunctionTool,
    client: AsyncClient | Client,
    *,
    scope: str = "",
    action_prefix: str = ACTION_PREFIX,
) -> FunctionTool:
    """A copy of ``tool`` whose calls are gated by ``needs_approval`` under its own name."""
    return dataclasses.replace(
        tool,
        needs_approval=needs_approval(tool.name, client, scope=scope, action_prefix=action_prefix),
    )


async def resolve_interruptions(
    result_or_state: RunResult | RunResultStreaming | RunState[Any],
    client: AsyncClient,
    *,
    # Not asyncio.timeout: a request nobody decided in time is cancelled and its call
    # rejected, and the state returned; a cancelled coroutine would return nothing.
    timeout: float | None = None,  # noqa: ASYNC109
    scope: str = "",
    action_prefix: str = ACTION_PREFIX,
) -> RunState[Any]:
    """Decide every paused call of a run through signoff; the state to resume with.

    Each call is asked about (the same request ``needs_approval`` filed, found by its
    idempotency key) and then waited for. With ``timeout`` (seconds, for all calls
    together) a request still pending at the end is cancelled and its call rejected.
    Resume with ``Runner.run(agent, state)``.
    """
    state = _state_of(result_or_state)
    filed: list[tuple[ToolApprovalItem, Filed | ToolCallVerdict]] = []
    for item in state.get_interruptions():  # every card goes out before the first wait
        asked = _request_for(item, scope, action_prefix)
        if isinstance(asked, ToolCallVerdict):
            filed.append((item, asked))
            continue
        try:
            filed.append((item, Filed(asked, await _ask(client, asked))))
        except SignoffError as exc:
            filed.append((item, verdict_for_error(exc, asked.tool_name)))
    deadline = None if timeout is None else time.monotonic() + timeout
    for item, outcome in filed:
        if isinstance(outcome, Filed):
            outcome = await _await_verdict(client, outcome, deadline)
        _apply(state, item, outcome)
    return state


def resolve_interruptions_sync(
    result_or_state: RunResult | RunResultStreaming | RunState[Any],
    client: Client,
    *,
    timeout: float | None = None,
    scope: str = "",
    action_prefix: str = ACTION_PREFIX,
) -> RunState[Any]:
    """``resolve_interruptions`` with a blocking ``Client``, for code around
    ``Runner.run_sync``."""
    state = _state_of(result_or_state)
    filed: list[tuple[ToolApprovalItem, Filed | ToolCallVerdict]] = []
    for item in state.get_interruptions():
        asked = _request_for(item, scope, action_prefix)
        if isinstance(asked, ToolCallVerdict):
            filed.append((item, asked))
            continue
        try:
            approval = client.request(
                asked.action,
                asked.title,
                params=asked.params,
                idempotency_key=asked.idempotency_key,
            )
            filed.append((item, Filed(asked, approval)))
        except SignoffError as exc:
            filed.append((item, verdict_for_error(exc, asked.tool_name)))
    deadline = None if timeout is None else time.monotonic() + timeout
    for item, outcome in filed:
        if isinstance(outcome, Filed):
            outcome = _await_verdict_sync(client, outcome, deadline)
        _apply(state, item, outcome)
    return state


# -- the two ends' shared steps --------------------------------------------------------------


def _state_of(result_or_state: RunResult | RunResultStreaming | RunState[Any]) -> RunState[Any]:
    if isinstance(result_or_state, RunState):
        return result_or_state
    return result_or_state.to_state()


def _tool_name(item: ToolApprovalItem) -> str:
    return item.tool_name or item.name or "tool"


def _request_for(
    item: ToolApprovalItem, scope: str, action_prefix: str
) -> ToolCallRequest | ToolCallVerdict:
    """The request for a paused call, or the rejection when it cannot be asked about."""
    tool_name = _tool_name(item)
    call_id = item.call_id
    if not call_id:
        return verdict_for_error(ValueError("the call has no call_id"), tool_name)
    try:
        params = json.loads(item.arguments or "{}")
    except ValueError:
        params = None
    if not isinstance(params, dict):
        return verdict_for_error(ValueError("its arguments are not a JSON object"), tool_name)
    return describe_call(tool_name, params, call_id, scope=scope, action_prefix=action_prefix)


def _apply(state: RunState[Any], item: ToolApprovalItem, verdict: ToolCallVerdict) -> None:
    if verdict.approved:
        state.approve(item)
    else:
        state.reject(item, rejection_message=verdict.message)


async def _ask(client: AsyncClient | Client, asked: ToolCallRequest) -> Approval:
    if isinstance(client, AsyncClient):
        return await client.request(
            asked.action, asked.title, params=asked.params, idempotency_key=asked.idempotency_key
        )
    # A blocking client must not stall the run's event loop.
    return await asyncio.to_thread(
        client.request,
        asked.action,
        asked.title,
        params=asked.params,
        idempotency_key=asked.idempotency_key,
    )


async def _check_receipt(
    client: AsyncClient | Client, request_id: str, asked: ToolCallRequest
) -> None:
    """Raise ``ReceiptError`` unless the signed receipt approves exactly this call."""
    if isinstance(client, AsyncClient):
        await client.verified_receipt(request_id, asked.action, asked.params)
    else:
        await asyncio.to_thread(client.verified_receipt, request_id, asked.action, asked.params)


async def _await_verdict(
    client: AsyncClient, filed: Filed, deadline: float | None
) -> ToolCallVerdict:
    asked, approval = filed.asked, filed.approval
    try:
        approval = await afinal_or_withdrawn(client, approval, deadline)
        verdict = verdict_for(approval, asked.tool_name)
        if verdict.approved:
            # The SDK runs the model's arguments: the signed receipt must cover exactly them.
            await client.verified_receipt(approval.id, asked.action, asked.params)
    except SignoffError as exc:
        return verdict_for_error(exc, asked.tool_name)
    return verdict


def _await_verdict_sync(client: Client, filed: Filed, deadline: float | None) -> ToolCallVerdict:
    asked, approval = filed.asked, filed.approval
    try:
        approval = final_or_withdrawn(client, approval, deadline)
        verdict = verdict_for(approval, asked.tool_name)
        if verdict.approved:
            client.verified_receipt(approval.id, asked.action, asked.params)
    except SignoffError as exc:
        return verdict_for_error(exc, asked.tool_name)
    return verdict
