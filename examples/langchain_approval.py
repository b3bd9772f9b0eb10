"""A LangChain agent whose table drops wait for a person's approval in signoff.

    .venv/bin/python examples/langchain_approval.py events_2019

The agent (``create_agent``) has one tool, ``drop_table``, gated by LangChain's
``HumanInTheLoopMiddleware``; ``review_interrupts`` from ``signoff_client.langchain``
answers the middleware's interrupts with the decisions made in signoff. The model is a fake
chat model that asks to drop the table named on the command line and then says it is done,
so the example runs offline. With ``--model openai:gpt-4.1`` (``pip install
langchain-openai`` and ``OPENAI_API_KEY``; any ``provider:model`` that ``init_chat_model``
knows) a real model decides what to call instead.

The run pauses at the call; approve, deny, or (under a policy with ``edits: allowed``)
change the arguments and approve "drop_table(table=...)" in the inbox. The script prints
what the tool answered the model, then the agent's last words, and exits 0 when a table
was dropped, 1 when none was. It reads ``SIGNOFF_URL`` and ``SIGNOFF_API_KEY``.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from signoff_client import Client
from signoff_client.langchain import review_interrupts


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's fake chat model, which ``create_agent`` may bind tools to."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self  # it answers from its script, whatever the tools


def scripted_model(table: str) -> ScriptedChatModel:
    """A model that asks to drop ``table`` once, then answers."""
    drop = {"name": "drop_table", "args": {"table": table}, "id": f"call_{uuid.uuid4().hex}"}
    return ScriptedChatModel(
        messages=iter(
            [
                AIMessage("", tool_calls=[drop]),
                AIMessage("I asked to drop the table; see the tool's answer above."),
            ]
        )
    )


def main(table: str, model: BaseChatModel | str) -> int:
    dropped: list[str] = []

    @tool
    def drop_table(table: str) -> str:
        """Drop a table of the analytics database."""
        dropped.append(table)
        return f"dropped analytics.{table}"

    agent = create_agent(
        model,
        tools=[drop_table],
        system_prompt="You drop the analytics tables the user names.",
        middleware=[
            HumanInTheLoopMiddleware(
                {"drop_table": {"allowed_decisions": ["approve", "edit", "reject"]}}
            )
        ],
        checkpointer=InMemorySaver(),  # where the paused run waits
    )
    # The thread id goes into the requests' idempotency keys: one per conversation.
    config: RunnableConfig = {"configurable": {"thread_id": f"example-{uuid.uuid4().hex}"}}
    output = agent.invoke(
        {"messages": [HumanMessage(f"Drop the table {table}.")]}, config, version="v2"
    )
    with Client() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY
        while output.interrupts:
            print("waiting for a person's decision on drop_table")
            command = review_interrupts(output, signoff, config=config)
            output = agent.invoke(command, config, version="v2")
    messages = output.value["messages"]
    for message in messages:
        if isinstance(message, ToolMessage):
            print(f"tool: {message.content}")
    print(f"agent: {messages[-1].content}")
    return 0 if dropped else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="the table the agent is asked to drop")
    parser.add_argument("--model", help="a real chat model, such as openai:gpt-4.1")
    arguments = parser.parse_args()
    sys.exit(main(arguments.table, arguments.model or scripted_model(arguments.table)))
