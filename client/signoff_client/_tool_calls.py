"""What every framework integration does with one tool call: its idempotency key, its
title, why it was not approved, withdrawing it when nobody decided in time.

The integrations (:mod:`signoff_client.openai_agents`, :mod:`signoff_client.langchain`,
:mod:`signoff_client.claude` and :mod:`signoff_client.hooks.claude_code`) each speak their
framework's language; what they tell signoff and the model about a call is the same, so it
is written once here. This module imports no framework.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from signoff_client import wire
from signoff_client.aio import AsyncClient
from signoff_client.errors import ApiError
from signoff_client.models import Approval
from signoff_client.sync import Client

MAX_TITLE_CHARS = 200
MAX_KEY_CHARS = 200  # the server's limit on an Idempotency-Key
_KEY_CHARACTERS = re.compile(r"^[!-~]+$")  # visible ASCII, as the server accepts
WITHDRAWN = "the agent stopped waiting for a decision"
"""The reason of the cancel that withdraws a request nobody decided in time."""


# -- naming a call ---------------------------------------------------------------------------


def is_usable_key(key: str) -> bool:
    """Whether the server accepts ``key`` as an Idempotency-Key."""
    return len(key) <= MAX_KEY_CHARS and _KEY_CHARACTERS.match(key) is not None


def idempotency_key(*parts: str) -> str:
    """The parts joined with ``:``; their SHA-256 instead when that is too long or not
    visible ASCII (a thread id may be anything; the server accepts neither)."""
    key = ":".join(part for part in parts if part)
    if is_usable_key(key):
        return key
    return f"{parts[0]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def call_title(tool_name: str, args: Mapping[str, Any]) -> str:
    """``drop_table(table="users")``, shortened to ``MAX_TITLE_CHARS``."""
    arguments = ", ".join(
        f"{name}={json.dumps(value, ensure_ascii=False, default=str)}"
        for name, value in args.items()
    )
    title = f"{tool_name}({arguments})"
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


# -- telling the model why a call did not run -------------------------------------------------


def deciders(approval: Approval) -> str:
    """Who decided: the people (``alice and bob``), else the decision's author."""
    return " and ".join(approval.deciders) or (
        approval.decision.by if approval.decision else "signoff"
    )


def not_approved(approval: Approval, tool_name: str) -> str:
    """Why a request that was not approved keeps the call from running, and that the model
    should not try again on its own."""
    decision = approval.decision
    reason = f": {decision.reason}" if decision is not None and decision.reason else ""
    if approval.status == "denied":
        if decision is not None and decision.by == "timeout":
            what = "nobody decided in time"
        elif approval.decided_by_people:
            what = f"denied by {deciders(approval)}"
        else:
            what = f"denied by the policy {approval.policy or '(unnamed)'}"
    elif approval.status == "expired":
        what = "the request expired without a decision"
    elif approval.status == "cancelled" and decision is not None and decision.reason == WITHDRAWN:
        # Our own withdrawal: its reason would only repeat what the model is told.
        what, reason = "nobody decided in time", ""
    elif approval.status == "cancelled":
        what = "the request was cancelled"
    else:
        what = "no decision yet"
    return (
        f"{what}{reason} (signoff request {approval.id}). Do not call {tool_name} again for "
        "this unless the user asks."
    )


def approved_with_changes(approval: Approval, tool_name: str, *, why_not_run: str = "") -> str:
    """An approval of edited arguments the framework cannot run in place of the model's:
    the approved arguments, so the model can call the tool again with exactly those."""
    edited = json.dumps(approval.edited_params, ensure_ascii=False, sort_keys=True)
    return (
        f"{deciders(approval)} approved this call of {tool_name} only with changed "
        f"arguments: {edited}{why_not_run}. To go ahead, call {tool_name} again with exactly "
        "these arguments."
    )


def not_obtained(error: Exception, tool_name: str) -> str:
    """Why a call whose approval could not be had does not run."""
    return f"approval for {tool_name} could not be obtained ({error})."


# -- waiting, and withdrawing when nobody decided in time -------------------------------------


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` instant); None for none."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def withdraw(
    client: Client, pending: Approval, reason: str = WITHDRAWN, *, deadline: float | None = None
) -> Approval:
    """Cancel a request nobody decided in time, so nobody approves a call that will not
    run; the request as it is afterwards. A decision that came first holds: the cancel is
    then refused with 409 and the request is read again.

    Raises:
        SignoffError: signoff could not be reached, or refused the cancel otherwise.
    """
    try:
        cancel = wire.cancel_call(pending.id, reason)
        return Approval.from_json(client.perform(cancel, deadline=deadline))
    except ApiError as exc:
        if exc.status != 409:
            raise
        return client.get(pending.id)


async def awithdraw(
    client: AsyncClient,
    pending: Approval,
    reason: str = WITHDRAWN,
    *,
    deadline: float | None = None,
) -> Approval:
    """``withdraw`` with an ``AsyncClient``."""
    try:
        cancel = wire.cancel_call(pending.id, reason)
        return Approval.from_json(await client.perform(cancel, deadline=deadline))
    except ApiError as exc:
        if exc.status != 409:
            raise
        return await client.get(pending.id)


def final_or_withdrawn(client: Client, approval: Approval, deadline: float | None) -> Approval:
    """The request once final; withdrawn when ``deadline`` passes first."""
    if not approval.is_final:
        approval = client.wait(approval.id, timeout=remaining(deadline))
    return approval if approval.is_final else withdraw(client, approval)


async def afinal_or_withdrawn(
    client: AsyncClient, approval: Approval, deadline: float | None
) -> Approval:
    """``final_or_withdrawn`` with an ``AsyncClient``."""
    if not approval.is_final:
        approval = await client.wait(approval.id, timeout=remaining(deadline))
    return approval if approval.is_final else await awithdraw(client, approval)
