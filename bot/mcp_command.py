"""``signoff mcp``'s command line, kept apart from the rest of the CLI so that the command
starts without loading the server side (store, config, admin commands): an MCP client
starts the server when it starts, and until it answers, the model has no approval tools.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DEFAULT_WAIT_SECONDS = 50
"""How long one tool call waits for a decision: under the ~60 s some MCP clients (Claude
Desktop) allow a call."""
MAX_WAIT_SECONDS = 86400
"""The longest ``--wait-seconds``: a day. Clients that allow long tool calls (Claude Code's
default is about 27.8 hours) can wait through a policy's whole timeout in one call; a wait
ends as soon as the request is final, so a bound above the longest policy timeout only
matters if signoff is down, and a day stays under that client default."""

HELP = "serve the approval tools to an MCP client over stdio"
DESCRIPTION = (
    "An MCP server on stdin/stdout with request_approval, get_approval, "
    "list_pending_approvals and cancel_approval, talking to a running signoff as an agent."
)
EPILOG = (
    "Reads SIGNOFF_URL (default: http://127.0.0.1:8080) and SIGNOFF_API_KEY. Without a key "
    "it still starts, and every tool call answers with what to set."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``signoff mcp``, for its own parser and for the full CLI's help."""
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=DEFAULT_WAIT_SECONDS,
        metavar="N",
        help=f"how long one tool call waits for a decision before answering pending "
        f"(1-{MAX_WAIT_SECONDS}; keep the default under clients that stop a tool call near "
        "60 s, such as Claude Desktop; raise it up to your policies' timeout for clients that "
        "allow long calls, such as Claude Code)",
    )


def run(argv: Sequence[str]) -> int:
    """Parse ``signoff mcp``'s own arguments (``argv`` after ``mcp``) and serve."""
    parser = argparse.ArgumentParser(prog="signoff mcp", description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    args = parser.parse_args(argv)
    from bot.mcp_server import serve  # the MCP SDK, loaded only now

    return serve(wait_seconds=args.wait_seconds)
