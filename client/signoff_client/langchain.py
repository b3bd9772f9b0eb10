"""Answer LangChain's ``HumanInTheLoopMiddleware`` interrupts with decisions made in signoff.

The middleware pauses a LangGraph run at gated tool calls (a LangGraph ``interrupt``); the
run goes on when it is invoked again with ``Command(resume=...)``. ``review_interrupts``
makes that command: it files a signoff request for each paused call, waits for the
decisions and turns each into the middleware's decision::

    from signoff_client import Client
    from signoff_client.langchain import review_interrupts

    config = {"configurable": {"thread_id": "cleanup-42"}}
    out = agent.invoke({"messages": [...]}, config, version="v2")
    with Client() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY
        while out.interrupts:
            out = agent.invoke(review_interrupts(out, signoff, config=config), config, version="v2")

``areview_interrupts`` is the same with an ``AsyncClient``, for ``ainvoke``. Both interrupt
modes are understood: ``batched`` (one ``HITLRequest`` per model turn, answered by position)
and ``per_call`` (one ``ToolApprovalRequest`` per call).

- approved → ``{"type": "approve"}``; approved with params an approver edited (a policy with
  ``edits: allowed``) → ``{"type": "edit", "edited_action": {"name", "args": <edited>}}``,
  so exactly the approved arguments run; either only when the request's signed receipt,
  checked with the server's keys, approves exactly the arguments that will run;
- denied, expired, cancelled, an error, or no decision within ``timeout`` → ``{"type":
  "reject", "message": ...}`` saying who decided and why: the model reads it.

A decision the tool's review config does not allow is never sent (the middleware would
raise on resume). Then it fails closed: an edit that cannot be sent is a rejection naming
the approved arguments; a rejection that cannot be sent is a ``respond`` with the same
message; when neither is allowed, ``DecisionNotAllowed`` is raised and the run stays paused.

Each request's idempotency key is made from the thread id, the interrupt's id and the call
(its ``tool_call_id``, or its position in a batched interrupt): reviewing the same
interrupt again, from another process too, finds the same requests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.types import Command, GraphOutput, Interrupt

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

ACTION_PREFIX = "langchain"
"""Actions are named ``langchain.<tool name>``: match them in policies."""

MAX_DETAILS_CHARS = 20_000  # the server's limit on a request's details
_ALL_DECISIONS = ("approve", "edit", "reject", "respond")

Decision = dict[str, Any]
"""One of the middleware's decisions: ``{"type": "approve" | "edit" | "reject" | ...}``."""


class DecisionNotAllowed(SignoffError):
    """signoff did not approve a call whose review config allows neither ``reject`` nor
    ``respond``: no answer the middleware accepts keeps the tool from running, so none is
    given and the run stays paused."""


@dataclass(frozen=True)
class GatedCall:
    """One tool call an interrupt asks about, and what signoff is asked."""

    interrupt_id: str
    position: int | None
    """Its place in a batched interrupt's ``action_requests``; None in per_call mode."""
    name: str
    args: dict[str, Any]
    description: str
    allowed_decisions: tuple[str, ...]
    action: str
    title: str
    idempotency_key: str


def decision_for(approval: Approval, call: GatedCall) -> Decision:
    """The decision that answers ``call`` with this (final) request.

    Raises:
        DecisionNotAllowed: signoff did not approve, and the call cannot be refused.
    """
    allowed = call.allowed_decisions
    if approval.status == "approved":
        if approval.edited_params is None:
            if "approve" in allowed:
                return {"type": "approve"}
            if "edit" in allowed:  # the model's own arguments, unchanged
                return _edit(call.name, call.args)
        elif "edit" in allowed:
            return _edit(call.name, approval.edited_params)
        else:
            unsendable = ", which this tool's review does not accept"
            return refusal(approved_with_changes(approval, call.name, why_not_run=unsendable), call)
    return refusal(not_approved(approval, call.name), call)


def decision_for_error(error: Exception, call: GatedCall) -> Decision:
    """The refusal of a call whose approval could not be had."""
    return refusal(not_obtained(error, call.name), call)


def refusal(message: str, call: GatedCall) -> Decision:
    """Keep the call from running and tell the model why, as its review config allows.

    Raises:
        DecisionNotAllowed: neither ``reject`` nor ``respond`` is allowed.
    """
    text = f"Not run: {message}"
    if "reject" in call.allowed_decisions:
        return {"type": "reject", "message": text}
    if "respond" in call.allowed_decisions:
        return {"type": "respond", "message": text}
    raise DecisionNotAllowed(
        f"{text} The review config of {call.name} allows only "
        f"{list(call.allowed_decisions)}, none of which refuses it; the run stays paused "
        f"(interrupt {call.interrupt_id})."
    )


def gated_calls(
    interrupts: GraphOutput[Any] | Mapping[str, Any] | Sequence[Interrupt[Any]],
    *,
    thread_id: str,
    action_prefix: str = ACTION_PREFIX,
) -> list[GatedCall]:
    """Every tool call the middleware's interrupts ask about, in order.

    Raises:
        ValueError: an interrupt that is not the middleware's (the command would not
            answer it).
    """
    calls: list[GatedCall] = []
    for interrupt in _interrupts_in(interrupts):
        value = interrupt.value
        if isinstance(value, Mapping) and isinstance(value.get("action_requests"), list):
            configs = list(value.get("review_configs") or [])
            for position, request in enumerate(value["action_requests"]):
                calls.append(
                    _gated_call(
                        interrupt,
                        position,
                        request,
                        _batched_allowed(configs, position, str(request["name"])),
                        key_parts=(thread_id, interrupt.id, str(position)),
                        action_prefix=action_prefix,
                    )
                )
        elif isinstance(value, Mapping) and value.get("type") == "tool_approval":
            calls.append(
                _gated_call(
                    interrupt,
                    None,
                    value,
                    _per_call_allowed(interrupt.response_schema),
                    key_parts=(thread_id, interrupt.id, str(value.get("tool_call_id") or "")),
                    action_prefix=action_prefix,
                )
            )
        else:
            raise ValueError(
                f"interrupt {interrupt.id} is not a HumanInTheLoopMiddleware request: {value!r}"
            )
    return calls


def resume_command(calls: Sequence[GatedCall], decisions: Sequence[Decision]) -> Command[Any]:
    """``Command(resume={interrupt id: answer})``: a batched interrupt's answer is
    ``{"decisions": [...]}`` in its calls' order, a per_call interrupt's is the decision."""
    answers: dict[str, Any] = {}
    for call, decision in zip(calls, decisions, strict=True):
        if call.position is None:
            answers[call.interrupt_id] = decision
        else:
            answers.setdefault(call.interrupt_id, {"decisions": []})["decisions"].append(decision)
    return Command(resume=answers)


def review_interrupts(
    interrupts: GraphOutput[Any] | Mapping[str, Any] | Sequence[Interrupt[Any]],
    client: Client,
    *,
    config: Mapping[str, Any],
    timeout: float | None = None,
    action_prefix: str = ACTION_PREFIX,
) -> Command[Any]:
    """Ask signoff about every paused call and return the command that resumes the run.

    ``interrupts`` is what ``invoke`` returned (with ``version="v2"`` or without), or the
    interrupts themselves (``agent.get_state(config).interrupts``). ``config`` is the run's
    config, whose ``thread_id`` goes into the idempotency keys. With ``timeout`` (seconds,
    for all calls together), a request still pending at the end is cancelled and its call
    refused.

    Raises:
        DecisionNotAllowed: a call that was not approved cannot be refused.
        ValueError: an interrupt that is not the middleware's, or no thread id.
    """
    calls = gated_calls(interrupts, thread_id=_thread_id(config), action_prefix=action_prefix)
    filed: list[Approval | Exception] = []
    for call in calls:  # every card goes out before the first wait
        try:
            filed.append(
                client.request(
                    call.action,
                    call.title,
                    details=call.description,
                    params=call.args,
                    idempotency_key=call.idempotency_key,
                )
            )
        except SignoffError as exc:
            filed.append(exc)
    deadline = None if timeout is None else time.monotonic() + timeout
    decisions: list[Decision] = []
    for call, outcome in zip(calls, filed, strict=True):
        if isinstance(outcome, Exception):
            decisions.append(decision_for_error(outcome, call))
            continue
        try:
            approval = final_or_withdrawn(client, outcome, deadline)
            decision = decision_for(approval, call)
            if (runs := _arguments_run(decision, call)) is not None:
                client.verified_receipt(approval.id, call.action, runs)
        except DecisionNotAllowed:
            raise
        except SignoffError as exc:
            decision = decision_for_error(exc, call)
        decisions.append(decision)
    return resume_command(calls, decisions)


async def areview_interrupts(
    interrupts: GraphOutput[Any] | Mapping[str, Any] | Sequence[Interrupt[Any]],
    client: AsyncClient,
    *,
    config: Mapping[str, Any],
    # Not asyncio.timeout: running out refuses the calls still pending and returns the
    # command; a cancelled coroutine would return nothing.
    timeout: float | None = None,  # noqa: ASYNC109
    action_prefix: str = ACTION_PREFIX,
) -> Command[Any]:
    """``review_interrupts`` with an ``AsyncClient``, for ``ainvoke``."""
    calls = gated_calls(interrupts, thread_id=_thread_id(config), action_prefix=action_prefix)
    filed: list[Approval | Exception] = []
    for call in calls:
        try:
            filed.append(
                await client.request(
                    call.action,
                    call.title,
                    details=call.description,
                    params=call.args,
                    idempotency_key=call.idempotency_key,
                )
            )
        except SignoffError as exc:
            filed.append(exc)
    deadline = None if timeout is None else time.monotonic() + timeout
    decisions: list[Decision] = []
    for call, outcome in zip(calls, filed, strict=True):
        if isinstance(outcome, Exception):
            decisions.append(decision_for_error(outcome, call))
            continue
        try:
            approval = await afinal_or_withdrawn(client, outcome, deadline)
            decision = decision_for(approval, call)
            if (runs := _arguments_run(decision, call)) is not None:
                await client.verified_receipt(approval.id, call.action, runs)
        except DecisionNotAllowed:
            raise
        except SignoffError as exc:
            decision = decision_for_error(exc, call)
        decisions.append(decision)
    return resume_command(calls, decisions)


# -- reading the interrupts -------------------------------------------------------------------


def _interrupts_in(
    interrupts: GraphOutput[Any] | Mapping[str, Any] | Sequence[Interrupt[Any]],
) -> Sequence[Interrupt[Any]]:
    if isinstance(interrupts, GraphOutput):
        return interrupts.interrupts
    if isinstance(interrupts, Mapping):  # invoke's output without version="v2"
        return tuple(interrupts.get("__interrupt__") or ())
    return interrupts


def _thread_id(config: Mapping[str, Any]) -> str:
    thread_id = (config.get("configurable") or {}).get("thread_id")
    if thread_id is None or str(thread_id) == "":
        raise ValueError("config has no configurable.thread_id; the interrupted run has one")
    return str(thread_id)


def _batched_allowed(configs: list[Any], position: int, name: str) -> tuple[str, ...]:
    """The allowed decisions of the action at ``position``: review configs come one per
    action, in order; matched by name when they do not."""
    candidates = [configs[position]] if position < len(configs) else []
    candidates += configs
    for config in candidates:
        if isinstance(config, Mapping) and config.get("action_name") == name:
            return tuple(str(kind) for kind in config.get("allowed_decisions") or ())
    return ()


def _per_call_allowed(schema: Any) -> tuple[str, ...]:
    """The decision types a per_call ``response_schema`` (JSON Schema) admits: the
    discriminator's mapping, or a single decision's ``type`` constant."""
    if not isinstance(schema, Mapping):
        return ("approve", "reject")  # what every gated tool allows unless told otherwise
    mapping = (schema.get("discriminator") or {}).get("mapping")
    if isinstance(mapping, Mapping):
        return tuple(str(kind) for kind in mapping)
    constant = ((schema.get("properties") or {}).get("type") or {}).get("const")
    if isinstance(constant, str):
        return (constant,)
    definitions = (schema.get("$defs") or {}).values()
    found = {
        ((definition.get("properties") or {}).get("type") or {}).get("const")
        for definition in definitions
        if isinstance(definition, Mapping)
    }
    return tuple(kind for kind in _ALL_DECISIONS if kind in found)


def _gated_call(
    interrupt: Interrupt[Any],
    position: int | None,
    request: Mapping[str, Any],
    allowed: tuple[str, ...],
    *,
    key_parts: tuple[str, ...],
    action_prefix: str,
) -> GatedCall:
    name = str(request["name"])
    args = dict(request.get("args") or {})
    return GatedCall(
        interrupt_id=interrupt.id,
        position=position,
        name=name,
        args=args,
        description=str(request.get("description") or "")[:MAX_DETAILS_CHARS],
        allowed_decisions=allowed,
        action=f"{action_prefix}.{name}",
        title=call_title(name, args),
        idempotency_key=idempotency_key(action_prefix, *key_parts),
    )


# -- from signoff's answer to a decision ------------------------------------------------------


def _arguments_run(decision: Decision, call: GatedCall) -> dict[str, Any] | None:
    """The arguments the tool runs with under ``decision`` (None when it does not run):
    what the signed receipt must approve."""
    if decision["type"] == "approve":
        return call.args
    if decision["type"] == "edit":
        return dict(decision["edited_action"]["args"])
    return None


def _edit(name: str, args: Mapping[str, Any]) -> Decision:
    return {"type": "edit", "edited_action": {"name": name, "args": dict(args)}}


__all__ = [
    "ACTION_PREFIX",
    "Decision",
    "DecisionNotAllowed",
    "GatedCall",
    "areview_interrupts",
    "decision_for",
    "decision_for_error",
    "gated_calls",
    "refusal",
    "resume_command",
    "review_interrupts",
]
