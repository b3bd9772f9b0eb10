"""An agent on the Claude Agent SDK whose tool calls each wait for a person's approval.

Run it from the checkout, with signoff started by ``make run`` in another terminal, the two
``export`` lines its first start printed pasted into this shell, Claude's own key exported
as ``ANTHROPIC_API_KEY``, and the SDK installed (examples/README.md)::

    .venv/bin/python examples/claude_sdk_agent.py "Create notes.txt saying hello, then show it"

The agent works in a new temporary directory, so it changes nothing of yours. Whenever
Claude Code would ask for permission (a shell command, writing a file, a web fetch),
``can_use_tool`` asks signoff instead: the call waits in the web inbox (or Slack, Telegram,
Discord, Teams, email), runs once approved, with an approver's edits when the policy allows
them, and is refused with the approver's reason otherwise, which Claude reads and answers.
The script prints what Claude says, then each refused call; it exits 1 if any was refused.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

from claude_agent_sdk import AssistantMessage, ClaudeAgentOptions, ResultMessage, TextBlock, query

from signoff_client import AsyncClient
from signoff_client.claude import can_use_tool


async def run_agent(task: str, workdir: str) -> int:
    refused = 0
    async with AsyncClient() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY
        options = ClaudeAgentOptions(cwd=workdir, can_use_tool=can_use_tool(signoff))
        async for message in query(prompt=task, options=options):
            if isinstance(message, AssistantMessage):
                for block in message.content:
                    if isinstance(block, TextBlock):
                        print(f"Claude: {block.text}", flush=True)
            elif isinstance(message, ResultMessage):
                for denial in message.permission_denials or []:
                    refused += 1
                    print(f"refused: {denial['tool_name']} {denial['tool_input']}", flush=True)
    return 1 if refused else 0


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} TASK", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="claude-agent-") as workdir:
        return asyncio.run(run_agent(sys.argv[1], workdir))


if __name__ == "__main__":
    sys.exit(main())
