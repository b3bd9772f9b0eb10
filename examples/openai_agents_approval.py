"""An OpenAI Agents SDK agent whose table drops wait for a person's approval in signoff.

    .venv/bin/python examples/openai_agents_approval.py events_2019

The agent has one tool, ``drop_table``, gated with ``needs_approval`` from
``signoff_client.openai_agents``. Its model is the SDK's own ``ScriptedModel``, which asks
to drop the table named on the command line and then says it is done, so the example runs
offline, with no OpenAI key. With ``--model gpt-4.1`` (and ``OPENAI_API_KEY`` set) a real
model decides what to call instead.

The run pauses at the call; ``resolve_interruptions`` waits for the decision in signoff
(approve or deny "drop_table(table=...)" in the inbox) and the run resumes with it. The
script prints what the tool answered the model, then the agent's last words, and exits 0
when the table was dropped, 1 when it was not. It reads ``SIGNOFF_URL`` and
``SIGNOFF_API_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

from agents import (
    Agent,
    Model,
    Runner,
    ToolCallOutputItem,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import ScriptedModel, assistant_message, function_call

from signoff_client import AsyncClient
from signoff_client.openai_agents import needs_approval, resolve_interruptions


def scripted_model(table: str) -> ScriptedModel:
    """A model that asks to drop ``table`` once, then answers."""
    # Every run gets a call id of its own: signoff finds a request again by its call id.
    call_id = f"call_{uuid.uuid4().hex}"
    return ScriptedModel(
        [
            [function_call("drop_table", {"table": table}, call_id=call_id)],
            [assistant_message("I asked to drop the table; see the tool's answer above.")],
        ]
    )


async def main(table: str, model: Model | str) -> int:
    dropped: list[str] = []
    async with AsyncClient() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY

        @function_tool(needs_approval=needs_approval("drop_table", signoff))
        def drop_table(table: str) -> str:
            """Drop a table of the analytics database."""
            dropped.append(table)
            return f"dropped analytics.{table}"

        agent: Agent[Any] = Agent(
            name="dba",
            instructions="You drop the analytics tables the user names.",
            model=model,
            tools=[drop_table],
        )
        result = await Runner.run(agent, f"Drop the table {table}.")
        while result.interruptions:
            for call in result.interruptions:
                print(f"waiting for a person's decision on {call.name}({call.arguments})")
            state = await resolve_interruptions(result, signoff)
            result = await Runner.run(agent, state)
    for item in result.new_items:
        if isinstance(item, ToolCallOutputItem):
            print(f"tool: {item.output}")
    print(f"agent: {result.final_output}")
    return 0 if dropped else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="the table the agent is asked to drop")
    parser.add_argument("--model", help="a real model, such as gpt-4.1 (needs OPENAI_API_KEY)")
    arguments = parser.parse_args()
    if arguments.model is None:
        set_tracing_disabled(True)  # offline: nowhere to send traces
    chosen: Model | str = arguments.model or scripted_model(arguments.table)
    sys.exit(asyncio.run(main(arguments.table, chosen)))
