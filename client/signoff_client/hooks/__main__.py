"""``python -m signoff_client.hooks NAME [OPTIONS]``: run the hook called NAME.

NAME is ``claude_code`` (or ``claude-code``). An unknown NAME exits 2, which Claude Code
treats as a blocked call: a misspelt hook never lets a call through.
"""

from __future__ import annotations

import sys

from signoff_client.hooks import claude_code

HOOKS = {"claude_code": claude_code.main, "claude-code": claude_code.main}


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in HOOKS:
        names = ", ".join(name for name in HOOKS if "_" in name)
        print(f"usage: python -m signoff_client.hooks {{{names}}} [OPTIONS]", file=sys.stderr)
        return claude_code.EXIT_BLOCK
    name, *options = argv
    return HOOKS[name](options, prog=f"python -m signoff_client.hooks {name}")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
