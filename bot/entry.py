"""The ``signoff`` executable: ``signoff mcp`` goes straight to the MCP server without
loading the rest of the CLI (about a second saved at every MCP client start); every other
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
    from bot.cli import run

    sys.exit(run())
