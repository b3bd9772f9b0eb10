"""Claude Code's PreToolUse command hook: a tool call runs only once a person approves it.

Claude Code starts the hook before every tool call its matcher selects, with the call as
JSON on stdin (``tool_name``, ``tool_input``, ``tool_use_id``, ``cwd``, and for an MCP tool
``mcp_server``). The hook asks signoff to approve exactly that call, waits for a person
(at most ``--wait`` seconds) and prints the decision as the hook's JSON on stdout::

    {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow",
                            "permissionDecisionReason": "...", "updatedInput": {...}}}

- ``allow`` once approved and the signed receipt covers the input that will run; with
  ``updatedInput``, the whole input an approver edited, which Claude Code runs instead.
- ``deny`` on a denial, an expiry, a cancel, a receipt that does not match, and any error
  (no ``SIGNOFF_API_KEY``, signoff unreachable, input that is not a PreToolUse call): the
  model reads the reason in the tool's result. Never an allow: input the hook cannot read
  exits 2, which Claude Code also treats as a refusal.
- When nobody decided within ``--wait``: ``deny`` (the default), ``ask`` (Claude Code's own
  prompt in the terminal; a refusal under ``claude -p``), or ``defer`` (``claude -p``
  only: the run ends and ``claude -p --resume`` asks again). For deny and ask the pending
  request is withdrawn, so nobody approves a call that is no longer waiting.

The request's idempotency key is made from ``tool_use_id``, which stays the same when a
deferred session is resumed: the hook asked twice for one call finds its first request.

The functions that name a call and phrase a decision are shared with the Claude Agent SDK
integration (:mod:`signoff_client.claude`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from signoff_client import wire
from signoff_client._tool_calls import is_usable_key, remaining, withdraw
from signoff_client.errors import ReceiptError, SignoffError
from signoff_client.models import Approval
from signoff_client.sync import Client

EXIT_OK = 0
EXIT_BLOCK = 2
"""Claude Code blocks the call when a hook exits 2, with its stderr as the reason."""

DEFAULT_WAIT_SECONDS = 540
"""How long the hook waits by default: under the 600 s Claude Code gives a command hook
that sets no ``timeout``, so the hook's own answer comes before Claude Code gives up."""
WITHDRAW_SECONDS = 5.0
"""How long withdrawing a request that nobody decided in time may take."""
ACTION_PREFIX = "claude-code"
IDEMPOTENCY_PREFIX = "claude-code"
REQUESTED_BY_VARIABLE = "SIGNOFF_REQUESTED_BY"
USER_AGENT = f"{wire.USER_AGENT} claude-code-hook"

TITLE_SUMMARY_CHARS = 100
"""The longest summary of a call's main argument in a request's title."""
MAIN_ARGUMENTS = (
    "command",
    "file_path",
    "notebook_path",
    "url",
    "query",
    "pattern",
    "path",
    "description",
    "prompt",
)
"""The input fields that say what a tool call does, in the order a title prefers them.

Bash's ``command`` comes before its ``description``: the model writes the description,
and the approver must see what will actually run."""

_NOT_IN_ACTION = re.compile(r"[^A-Za-z0-9_.:/-]")
"""Characters signoff does not accept in an action name."""
_ACTION_MAX_CHARS = 200

OnTimeout = Literal["deny", "ask", "defer"]
ON_TIMEOUT_CHOICES: tuple[OnTimeout, ...] = ("deny", "ask", "defer")
PermissionDecision = Literal["allow", "deny", "ask", "defer"]


class HookInputError(Exception):
    """stdin is not a PreToolUse call the hook can ask about."""


# -- naming a tool call --------------------------------------------------------------------


@dataclass(frozen=True)
class AskedCall:
    """What signoff is asked to approve for one tool call."""

    action: str
    title: str
    details: str
    params: dict[str, Any]
    idempotency_key: str | None


def action_for(tool_name: str, mcp_server: str | None = None) -> str:
    """``claude-code.<tool>``; an MCP tool is ``claude-code.mcp.<server>.<tool>``.

    Claude Code names MCP tools ``mcp__<server>__<tool>``; the server's name is taken from
    ``mcp_server`` when Claude Code gives it, as a name may itself contain underscores.
    """
    parts = [ACTION_PREFIX]
    mcp = _mcp_parts(tool_name, mcp_server)
    parts += ["mcp", *mcp] if mcp else [tool_name]
    action = ".".join(_NOT_IN_ACTION.sub("-", part) for part in parts)
    return action[:_ACTION_MAX_CHARS]


def _mcp_parts(tool_name: str, mcp_server: str | None) -> tuple[str, str] | None:
    """(server, tool) of an MCP tool's name, or None for a built-in tool."""
    if not tool_name.startswith("mcp__"):
        return None
    if mcp_server and tool_name.startswith(f"mcp__{mcp_server}__"):
        return mcp_server, tool_name[len(f"mcp__{mcp_server}__") :]
    parts = tool_name.split("__", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def shorten(text: str, limit: int = TITLE_SUMMARY_CHARS) -> str:
    """The first non-empty line of ``text`` with runs of spaces folded, cut at ``limit``
    characters with an ellipsis; ``…`` marks a line that had more lines after it."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    first = lines[0]
    if len(first) > limit:
        return first[: limit - 1].rstrip() + "…"
    return first + " …" if len(lines) > 1 else first


def title_for(tool_name: str, tool_input: Mapping[str, Any], mcp_server: str | None = None) -> str:
    """One line for the approvers: the tool and its main argument, such as
    ``Bash: rm -rf build`` or ``MCP ops/deploy: web 1.4``."""
    mcp = _mcp_parts(tool_name, mcp_server)
    label = f"MCP {mcp[0]}/{mcp[1]}" if mcp else tool_name
    summary = ""
    for name in MAIN_ARGUMENTS:
        value = tool_input.get(name)
        if isinstance(value, str) and value.strip():
            summary = shorten(value)
            break
    if not summary and mcp:
        # An MCP tool's fields are its own: its first text argument says the most.
        first_text = next((v for v in tool_input.values() if isinstance(v, str) and v.strip()), "")
        summary = shorten(first_text)
    return f"{label}: {summary}" if summary else label


def details_for(
    tool_name: str, tool_input: Mapping[str, Any], cwd: str | None, *, source: str
) -> str:
    """More for the approvers: which agent and tool, where, and the model's description."""
    lines = [f"{source} wants to use the tool {tool_name}."]
    description = tool_input.get("description")
    if isinstance(description, str) and description.strip() and "command" in tool_input:
        lines.append(f"The model describes it as: {description.strip()}")
    if cwd:
        lines.append(f"Working directory: {cwd}")
    lines.append("The params are the tool's input exactly as it will run.")
    return "\n".join(lines)


def idempotency_key_for(tool_use_id: str | None, prefix: str = IDEMPOTENCY_PREFIX) -> str | None:
    """The request's idempotency key for one tool call, or None without a usable id."""
    if not tool_use_id:
        return None
    key = f"{prefix}:{tool_use_id}"
    return key if is_usable_key(key) else None


def describe_call(
    tool_name: str,
    tool_input: Mapping[str, Any],
    *,
    tool_use_id: str | None = None,
    mcp_server: str | None = None,
    cwd: str | None = None,
    source: str = "Claude Code",
    key_prefix: str = IDEMPOTENCY_PREFIX,
) -> AskedCall:
    """The request for one tool call: params are the tool's input exactly as given."""
    return AskedCall(
        action=action_for(tool_name, mcp_server),
        title=title_for(tool_name, tool_input, mcp_server),
        details=details_for(tool_name, tool_input, cwd, source=source),
        params=dict(tool_input),
        idempotency_key=idempotency_key_for(tool_use_id, key_prefix),
    )


def read_hook_input(text: str) -> AskedCall:
    """The call to ask about, from the hook's stdin.

    Raises:
        HookInputError: when stdin is not the JSON of a PreToolUse call.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise HookInputError(f"stdin is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise HookInputError("stdin is not a JSON object")
    return parse_hook_input(data)


def parse_hook_input(data: Mapping[str, Any], tool_use_id: str | None = None) -> AskedCall:
    """The call to ask about, from a PreToolUse hook's input (``tool_use_id`` when it
    comes apart from it, as in the Agent SDK's hook callbacks).

    Raises:
        HookInputError: when ``data`` is not a PreToolUse call.
    """
    event = data.get("hook_event_name", "PreToolUse")
    if event != "PreToolUse":
        raise HookInputError(f"the hook is for PreToolUse; it was run for {event!r}")
    tool_name, tool_input = data.get("tool_name"), data.get("tool_input")
    if not isinstance(tool_name, str) or not tool_name:
        raise HookInputError("the hook's input has no tool_name")
    if not isinstance(tool_input, dict):
        raise HookInputError("the hook's input has no tool_input object")
    server = data.get("mcp_server")
    server_name = server.get("name") if isinstance(server, dict) else None
    call_id, cwd = data.get("tool_use_id") or tool_use_id, data.get("cwd")
    return describe_call(
        tool_name,
        tool_input,
        tool_use_id=call_id if isinstance(call_id, str) else None,
        mcp_server=server_name if isinstance(server_name, str) else None,
        cwd=cwd if isinstance(cwd, str) else None,
    )


# -- phrasing a decision -------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The hook's answer for one call; ``reason`` is what the model (or user) reads."""

    decision: PermissionDecision
    reason: str
    updated_input: dict[str, Any] | None = None

    def hook_output(self) -> dict[str, Any]:
        """The PreToolUse hook JSON Claude Code reads."""
        output: dict[str, Any] = {
            "hookEventName": "PreToolUse",
            "permissionDecision": self.decision,
            "permissionDecisionReason": self.reason,
        }
        if self.updated_input is not None:
            output["updatedInput"] = self.updated_input
        return {"hookSpecificOutput": output}


def input_to_run(approval: Approval, asked: AskedCall) -> dict[str, Any]:
    """The input that runs once approved: the approvers' edit, else the call as asked."""
    return approval.edited_params if approval.edited_params is not None else asked.params


def approved_verdict(approval: Approval) -> Verdict:
    """``allow``, with the edited input when an approver changed it."""
    who = ", ".join(approval.deciders) or (approval.decision.by if approval.decision else "")
    reason = f"Approved in signoff by {who or 'its policy'} (request {approval.id})"
    if approval.decision is not None and approval.decision.reason:
        reason += f": {approval.decision.reason}"
    if approval.edited_params is not None:
        reason += ". An approver changed the input; the edited input runs"
        return Verdict("allow", reason + ".", updated_input=dict(approval.edited_params))
    return Verdict("allow", reason + ".")


def refused_verdict(approval: Approval) -> Verdict:
    """``deny`` for a final request that was not approved, saying who and why."""
    decision = approval.decision
    by = decision.by if decision else "signoff"
    because = f": {decision.reason}" if decision and decision.reason else ""
    if approval.status == "denied" and approval.decided_by_people:
        text = f"Denied in signoff by {by}{because} (request {approval.id})."
    elif approval.status == "denied":
        text = f"Denied by signoff ({by}){because} (request {approval.id})."
    elif approval.status == "expired":
        text = f"Nobody decided in signoff before the deadline; request {approval.id} expired."
    else:
        text = f"The signoff request {approval.id} was cancelled{because}."
    return Verdict("deny", f"{text} Do not run this call, nor the same action another way.")


def unanswered_verdict(request_id: str, wait_seconds: float, on_timeout: OnTimeout) -> Verdict:
    """Nobody decided within the hook's wait: deny, ask in the terminal, or defer."""
    waited = f"Nobody decided in signoff within {wait_seconds:g} s (request {request_id})"
    if on_timeout == "defer":
        return Verdict("defer", f"{waited}; deferred until the session is resumed.")
    if on_timeout == "ask":
        return Verdict("ask", f"{waited}; asking in Claude Code instead.")
    return Verdict("deny", f"{waited}, so this call is refused.")


def error_verdict(error: BaseException) -> Verdict:
    """``deny`` for anything that kept the hook from getting a decision."""
    return Verdict(
        "deny",
        f"signoff could not be asked for approval, so this call is refused: {error}",
    )


# -- asking --------------------------------------------------------------------------------


def create_call(asked: AskedCall, requested_by: str | None) -> wire.Call:
    """The API call that files the request (again, with the same key, on a re-ask)."""
    body = wire.create_body(
        asked.action,
        asked.title,
        details=asked.details,
        params=asked.params,
        requested_by=requested_by,
        timeout_seconds=None,
        callback_url=None,
    )
    return wire.create_call(body, asked.idempotency_key or wire.new_idempotency_key())


def withdraw_reason(wait_seconds: float) -> str:
    return f"the agent stopped waiting after {wait_seconds:g} s"


def settled_verdict(
    current: Approval,
    *,
    withdrawn: bool,
    wait_seconds: float | None,
    on_timeout: OnTimeout,
) -> Verdict | None:
    """The verdict for a request that is not approved; None when it is (the receipt is
    checked next). ``withdrawn``: the hook cancelled it because nobody decided in time."""
    if current.status == "approved":
        return None
    if current.status == "pending" or (withdrawn and current.status == "cancelled"):
        return unanswered_verdict(current.id, wait_seconds or 0.0, on_timeout)
    return refused_verdict(current)


def receipt_verdict(approval: Approval, error: ReceiptError | None) -> Verdict:
    """``allow`` when the receipt covers what will run, else ``deny`` saying why."""
    if error is not None:
        return Verdict(
            "deny",
            f"signoff's signed receipt does not cover this call, so it is refused: {error}",
        )
    return approved_verdict(approval)


def gate(
    client: Client,
    asked: AskedCall,
    *,
    wait_seconds: float | None,
    on_timeout: OnTimeout = "deny",
    requested_by: str | None = None,
) -> Verdict:
    """Ask signoff about one call and wait at most ``wait_seconds`` (None: for as long as
    it takes) for the decision.

    Raises:
        SignoffError: when signoff could not be asked or answered with an error.
    """
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    answer = client.perform(create_call(asked, requested_by), deadline=deadline)
    current = Approval.from_json(answer)
    if not current.is_final:
        current = client.wait(current.id, timeout=remaining(deadline))
    withdrawn = False
    if not current.is_final and on_timeout != "defer" and wait_seconds is not None:
        current, withdrawn = _withdraw(client, current, wait_seconds), True
    verdict = settled_verdict(
        current, withdrawn=withdrawn, wait_seconds=wait_seconds, on_timeout=on_timeout
    )
    if verdict is not None:
        return verdict
    try:
        client.verified_receipt(current.id, current.action, input_to_run(current, asked))
    except ReceiptError as exc:
        return receipt_verdict(current, exc)
    return receipt_verdict(current, None)


def _withdraw(client: Client, pending: Approval, wait_seconds: float) -> Approval:
    """Cancel a request nobody decided in time; the request as it is afterwards.

    A decision that came in meanwhile wins. When signoff cannot be reached the request is
    left pending, and the call is still not run: the hook must answer before Claude Code
    gives up on it, so withdrawing may take only ``WITHDRAW_SECONDS``.
    """
    deadline = time.monotonic() + WITHDRAW_SECONDS
    try:
        return withdraw(client, pending, withdraw_reason(wait_seconds), deadline=deadline)
    except SignoffError:
        return pending


# -- the command ---------------------------------------------------------------------------

HELP = "Claude Code's PreToolUse hook: a tool call waits for approval in signoff"
DESCRIPTION = (
    "Reads a PreToolUse call from stdin, asks signoff to approve exactly that call "
    "(action claude-code.TOOL, or claude-code.mcp.SERVER.TOOL) and prints Claude Code's "
    "hook JSON: allow once approved (with the input an approver edited), deny with the "
    "reason otherwise. Errors are denials, never allows."
)
EPILOG = (
    "Reads SIGNOFF_URL, SIGNOFF_API_KEY and SIGNOFF_REQUESTED_BY. In settings.json give "
    'the hook entry a "timeout" above --wait (say 60 s more) and "onFailure": "block", '
    "so that Claude Code refuses the call should the hook itself fail or be killed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The hook's options, for its own parser and for ``signoff hook claude-code``."""
    parser.add_argument(
        "--wait",
        type=_positive_seconds,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help="how long to wait for a decision (default: %(default)s); keep it below the "
        'hook entry\'s "timeout" in settings.json (default there: 600)',
    )
    parser.add_argument(
        "--on-timeout",
        choices=ON_TIMEOUT_CHOICES,
        default="deny",
        help="when nobody decided within --wait: deny the call (default); ask, to fall "
        "back to Claude Code's own prompt in the terminal (a refusal under claude -p); or "
        "defer, under claude -p only, ending the run until claude -p --resume asks again",
    )
    parser.add_argument(
        "--requested-by",
        metavar="PERSON",
        help=f"the person the agent acts for (default: ${REQUESTED_BY_VARIABLE})",
    )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 86400]")
    return seconds


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "signoff hook claude-code",
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the hook: stdin to a decision on stdout; the exit code Claude Code reads."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return run(parser.parse_args(argv), stdin=stdin, stdout=stdout)


def run(
    args: argparse.Namespace, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the hook with parsed options (``signoff hook claude-code`` comes here)."""
    try:
        asked = read_hook_input((stdin or sys.stdin).read())
    except (HookInputError, OSError, UnicodeDecodeError) as exc:
        # Without a readable call there is no PreToolUse JSON to answer with: exit 2 is
        # the refusal Claude Code understands for every hook event.
        print(f"signoff hook: {exc}; the call is refused", file=sys.stderr)
        return EXIT_BLOCK
    requested_by = args.requested_by or os.environ.get(REQUESTED_BY_VARIABLE) or None
    try:
        with Client(user_agent=USER_AGENT) as client:
            verdict = gate(
                client,
                asked,
                wait_seconds=args.wait,
                on_timeout=args.on_timeout,
                requested_by=requested_by,
            )
    except Exception as exc:  # any failure at all is a refusal, never an allow
        verdict = error_verdict(exc)
    try:
        out = stdout or sys.stdout
        out.write(json.dumps(verdict.hook_output()) + "\n")
        out.flush()
    except (OSError, ValueError) as exc:
        print(f"signoff hook: cannot answer ({exc}); the call is refused", file=sys.stderr)
        return EXIT_BLOCK
    return EXIT_OK
