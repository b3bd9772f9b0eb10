"""The Claude Agent SDK's tool calls gated on signoff: a call runs once a person approves it.

Two ways in, asking signoff exactly what ``signoff hook claude-code`` asks (action
``claude-code.<tool>``, params = the tool's input as the model gave it)::

    from claude_agent_sdk import ClaudeAgentOptions, query
    from signoff_client import AsyncClient
    from signoff_client.claude import can_use_tool, pre_tool_use_hook

    async with AsyncClient() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY
        options = ClaudeAgentOptions(can_use_tool=can_use_tool(signoff))
        # or: ClaudeAgentOptions(hooks={"PreToolUse": [pre_tool_use_hook(signoff, "Bash")]})
        async for message in query(prompt="...", options=options): ...

- ``can_use_tool`` answers the permission prompts Claude Code would show: it is not asked
  about tools ``allowed_tools`` allows outright, nor under ``bypassPermissions``.
- ``pre_tool_use_hook`` is a PreToolUse ``HookMatcher`` that sees every call its matcher
  selects, whatever the permission rules; ``on_failure="block"`` and a timeout above its
  wait make an error or a hang a refusal.

An approval is ``allow`` (with an approver's edited input as the whole new input) once its
signed receipt covers the input that will run; anything else, errors included, is a deny
whose message the model reads. The request's idempotency key comes from the call's
``tool_use_id``, so a resumed session never asks twice. This module imports
``claude_agent_sdk``; ``import signoff_client`` alone does not.
"""

from __future__ import annotations

import time
from typing import Any

from claude_agent_sdk import (
    CanUseTool,
    HookContext,
    HookInput,
    HookJSONOutput,
    HookMatcher,
    PermissionResult,
    PermissionResultAllow,
    PermissionResultDeny,
    ToolPermissionContext,
)
from claude_agent_sdk.types import PreToolUseHookSpecificOutput, SyncHookJSONOutput

from signoff_client._tool_calls import awithdraw, remaining
from signoff_client.aio import AsyncClient
from signoff_client.errors import ReceiptError, SignoffError
from signoff_client.hooks.claude_code import (
    DEFAULT_WAIT_SECONDS,
    WITHDRAW_SECONDS,
    AskedCall,
    OnTimeout,
    Verdict,
    create_call,
    describe_call,
    error_verdict,
    input_to_run,
    parse_hook_input,
    receipt_verdict,
    settled_verdict,
    withdraw_reason,
)
from signoff_client.models import Approval

SOURCE = "A Claude Agent SDK agent"
CAN_USE_TOOL_KEY_PREFIX = "claude-agent-sdk"
"""The idempotency keys of ``can_use_tool``'s requests. Its requests carry no working
directory, so they are not the PreToolUse hook's requests for the same call."""
HOOK_TIMEOUT_MARGIN = 60.0
"""How much longer than its wait the hook matcher's timeout is by default: the wait ends
first, so the answer is the hook's own, not the SDK's timeout."""


def can_use_tool(
    client: AsyncClient,
    *,
    wait: float | None = None,
    requested_by: str | None = None,
) -> CanUseTool:
    """The ``ClaudeAgentOptions(can_use_tool=...)`` callback that asks signoff.

    Args:
        client: the signoff client the callback uses (it is not closed here).
        wait: seconds to wait for a decision before denying (the request is then
            withdrawn); None waits as long as signoff's policy gives the approvers (the
            SDK puts no limit on this callback).
        requested_by: the person the agent acts for.
    """

    async def ask_signoff(
        tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResult:
        try:
            asked = describe_call(
                tool_name,
                tool_input,
                tool_use_id=context.tool_use_id,
                source=SOURCE,
                key_prefix=CAN_USE_TOOL_KEY_PREFIX,
            )
            verdict = await gate(client, asked, wait_seconds=wait, requested_by=requested_by)
        except Exception as exc:  # any failure at all is a denial, never an allow
            verdict = error_verdict(exc)
        if verdict.decision == "allow":
            return PermissionResultAllow(updated_input=verdict.updated_input)
        return PermissionResultDeny(message=verdict.reason)

    return ask_signoff


def pre_tool_use_hook(
    client: AsyncClient,
    matcher: str | None = None,
    *,
    wait: float = DEFAULT_WAIT_SECONDS,
    timeout: float | None = None,
    on_timeout: OnTimeout = "deny",
    requested_by: str | None = None,
) -> HookMatcher:
    """A PreToolUse ``HookMatcher`` whose callback asks signoff, for
    ``ClaudeAgentOptions(hooks={"PreToolUse": [pre_tool_use_hook(signoff, "Bash")]})``.

    Args:
        client: the signoff client the callback uses (it is not closed here).
        matcher: the tools it gates, as in settings.json (``"Bash|Write"``,
            ``"mcp__ops__.*"``); None gates every tool.
        wait: seconds to wait for a decision.
        timeout: the SDK's limit for the callback (default: ``wait`` plus a minute);
            keep it above ``wait``. Going over it blocks the call (``on_failure="block"``).
        on_timeout: when nobody decided within ``wait``: ``deny`` (the request is
            withdrawn), ``ask`` (the SDK's ``can_use_tool``, or the CLI's prompt), or
            ``defer`` (``query()`` ends with ``stop_reason == "tool_deferred"``; resuming
            the session asks again and finds the same request).
        requested_by: the person the agent acts for.
    """

    async def ask_signoff(
        hook_input: HookInput, tool_use_id: str | None, context: HookContext
    ) -> HookJSONOutput:
        try:
            asked = parse_hook_input(hook_input, tool_use_id)
            verdict = await gate(
                client,
                asked,
                wait_seconds=wait,
                on_timeout=on_timeout,
                requested_by=requested_by,
            )
        except Exception as exc:  # any failure at all is a denial, never an allow
            verdict = error_verdict(exc)
        return hook_output(verdict)

    return HookMatcher(
        matcher=matcher,
        hooks=[ask_signoff],
        timeout=wait + HOOK_TIMEOUT_MARGIN if timeout is None else timeout,
        on_failure="block",
    )


def hook_output(verdict: Verdict) -> SyncHookJSONOutput:
    """``verdict`` as the SDK's typed PreToolUse hook output."""
    specific: PreToolUseHookSpecificOutput = {
        "hookEventName": "PreToolUse",
        "permissionDecision": verdict.decision,
        "permissionDecisionReason": verdict.reason,
    }
    if verdict.updated_input is not None:
        specific["updatedInput"] = verdict.updated_input
    return {"hookSpecificOutput": specific}


async def gate(
    client: AsyncClient,
    asked: AskedCall,
    *,
    wait_seconds: float | None,
    on_timeout: OnTimeout = "deny",
    requested_by: str | None = None,
) -> Verdict:
    """Ask signoff about one call and wait at most ``wait_seconds`` (None: for as long as
    it takes); the asyncio twin of :func:`signoff_client.hooks.claude_code.gate`.

    Raises:
        SignoffError: when signoff could not be asked or answered with an error.
    """
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    current = await _create(client, asked, requested_by, deadline)
    if not current.is_final:
        current = await client.wait(current.id, timeout=remaining(deadline))
    withdrawn = False
    if not current.is_final and on_timeout != "defer" and wait_seconds is not None:
        current, withdrawn = await _withdraw(client, current, wait_seconds), True
    verdict = settled_verdict(
        current, withdrawn=withdrawn, wait_seconds=wait_seconds, on_timeout=on_timeout
    )
    if verdict is not None:
        return verdict
    try:
        await client.verified_receipt(current.id, current.action, input_to_run(current, asked))
    except ReceiptError as exc:
        return receipt_verdict(current, exc)
    return receipt_verdict(current, None)


async def _create(
    client: AsyncClient, asked: AskedCall, requested_by: str | None, deadline: float | None
) -> Approval:
    answer = await client.perform(create_call(asked, requested_by), deadline=deadline)
    return Approval.from_json(answer)


async def _withdraw(client: AsyncClient, pending: Approval, wait_seconds: float) -> Approval:
    """Cancel a request nobody decided in time; the request as it is afterwards (a
    decision that came in meanwhile wins; unreachable, it stays pending and unrun)."""
    deadline = time.monotonic() + WITHDRAW_SECONDS
    try:
        return await awithdraw(client, pending, withdraw_reason(wait_seconds), deadline=deadline)
    except SignoffError:
        return pending
