"""The ``signoff`` executable: ``signoff mcp`` goes straight to the MCP server, and
``signoff hook claude-code`` to the client's hook, without loading the rest of the CLI
(about a second saved at every MCP client start and every gated tool call); every other
command goes to :mod:`bot.cli`."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # python-telegram-bot reports retry_after as a timedelta only when asked to (its
    # seconds form is deprecated and warns).
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    arguments = sys.argv[1:]
    if arguments[:1] == ["mcp"]:
        from bot import mcp_command

        sys.exit(mcp_command.run(arguments[1:]))
    if arguments[:2] == ["hook", "claude-code"]:
        from signoff_client.hooks import claude_code

        sys.exit(claude_code.main(arguments[2:]))
    from bot.cli import run

    sys.exit(run())
