"""Approvals with edits, end to end, through the OpenAI Agents SDK and LangChain.

An approver changes a paused call's arguments in the web inbox before approving it (a
policy with ``edits: allowed``): LangChain's middleware runs exactly the edited arguments;
the OpenAI Agents SDK cannot, so the call is rejected with a message that names them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from signoff_client import AsyncClient, Client
from signoff_client.langchain import review_interrupts
from signoff_client.openai_agents import call_title, gate, resolve_interruptions
from tests.client.server import ServedSignoff
from tests.integrations.frameworks_world import serve_frameworks_signoff, unique
from tests.web.conftest import csrf_token_in

set_tracing_disabled(True)  # else the SDK's trace exporter calls api.openai.com

EDITS_ALLOWED = """\
  - name: edits-allowed
    match: {action: ["openai-agents.drop_table", "langchain.drop_table"]}
    edits: allowed
    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]
"""


@pytest.fixture(scope="module")
def edits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSignoff]:
    with serve_frameworks_signoff(
        tmp_path_factory.mktemp("edits-signoff"), extra_policies=EDITS_ALLOWED
    ) as served:
        yield served


def approve_with_edits(
    served: ServedSignoff, title: str, params: dict[str, Any], person: str = "alice"
) -> dict[str, Any]:
    """Wait for the pending request titled ``title``, then approve it in the web inbox with
    ``params`` in place of the agent's; the request as the agent API then reports it."""
    asked = served.pending_titled(title)
    inbox = served.approvers[person].http
    page = inbox.get(f"/requests/{asked['id']}")
    assert page.status_code == 200, page.text
    answer = inbox.post(
        f"/requests/{asked['id']}/approve",
        data={
            "csrf_token": csrf_token_in(page.text),
            "reason": "",
            "params": json.dumps(params),
        },
    )
    assert answer.status_code == 303, f"the edited approval was refused: {answer.text[:500]}"
    with served.api() as api:
        now = api.get(f"/v1/approvals/{asked['id']}").json()
    assert (now["status"], now["edited_params"]) == ("approved", params)
    assert now["edited_payload_sha256"] not in (None, now["payload_sha256"])
    return dict(now)


class ScriptedChatModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


@pytest.mark.parametrize("mode", ["batched", "per_call"])
def test_langchain_runs_the_arguments_the_approver_edited(edits_server, mode):
    dropped: list[str] = []

    @tool
    def drop_table(table: str) -> str:
        """Drop a table."""
        dropped.append(table)
        return f"dropped {table}"

    asked_for, edited_to = unique("users"), unique("users_2019")
    tool_call = {"name": "drop_table", "args": {"table": asked_for}, "id": unique("toolu")}
    agent = create_agent(
        ScriptedChatModel(messages=iter([AIMessage("", tool_calls=[tool_call]), AIMessage("ok")])),
        tools=[drop_table],
        middleware=[HumanInTheLoopMiddleware({"drop_table": True}, interrupt_mode=mode)],
        checkpointer=InMemorySaver(),
    )
    config: RunnableConfig = {"configurable": {"thread_id": unique("thread")}}
    paused = agent.invoke({"messages": [HumanMessage("drop the old users")]}, config, version="v2")

    with (
        Client(edits_server.base_url, edits_server.api_key) as signoff,
        ThreadPoolExecutor(1) as alice,
    ):
        editing = alice.submit(
            approve_with_edits,
            edits_server,
            f'drop_table(table="{asked_for}")',
            {"table": edited_to},
        )
        command = review_interrupts(paused, signoff, config=config)
        edited = editing.result(timeout=30)
    assert edited["params"] == {"table": asked_for}
    done = agent.invoke(command, config, version="v2")

    assert dropped == [edited_to]
    (result,) = [m for m in done.value["messages"] if isinstance(m, ToolMessage)]
    assert f"dropped {edited_to}" in str(result.content)
    assert "replaced this tool call" in str(result.content)  # the middleware's edit notice


async def test_openai_agents_rejects_an_edited_approval_naming_the_arguments(edits_server):
    dropped: list[str] = []

    @function_tool
    def drop_table(table: str) -> str:
        """Drop a table."""
        dropped.append(table)
        return f"dropped {table}"

    asked_for, edited_to = unique("events"), unique("events_2019")
    call_id = unique("call")
    model = ScriptedModel(
        [
            [function_call("drop_table", {"table": asked_for}, call_id=call_id)],
            [assistant_message("understood")],
        ]
    )
    async with AsyncClient(edits_server.base_url, edits_server.api_key) as signoff:
        agent = Agent(name="dba", model=model, tools=[gate(drop_table, signoff)])
        paused = await Runner.run(agent, "drop the old events")
        edited = await asyncio.to_thread(
            approve_with_edits,
            edits_server,
            call_title("drop_table", {"table": asked_for}),
            {"table": edited_to},
        )
        resumed = await Runner.run(agent, await resolve_interruptions(paused, signoff))

    assert resumed.final_output == "understood"
    assert dropped == []
    last = model.last_call
    assert last is not None
    (told,) = [
        item["output"]
        for item in last.input
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    assert told == (
        "Not run: alice approved this call of drop_table only with changed arguments: "
        f'{{"table": "{edited_to}"}}. To go ahead, call drop_table again with exactly '
        "these arguments."
    )
    assert edited["params"] == {"table": asked_for}
