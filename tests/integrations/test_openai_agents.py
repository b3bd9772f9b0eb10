"""The OpenAI Agents SDK gated by signoff: a real ``Agent`` driven by the SDK's own
``ScriptedModel``, a real ``signoff serve``, and approvers who click in the web inbox.

A gated call pauses the run; the paused state survives JSON; ``resolve_interruptions``
turns the person's decision into ``RunState.approve`` / ``reject``, and the resumed run
runs the tool (or tells the model why not). A call a policy approves never pauses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agents import Agent, Runner, RunState, Tool, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from signoff_client import Approval, AsyncClient, Client, RetryPolicy
from signoff_client.openai_agents import (
    call_title,
    gate,
    needs_approval,
    resolve_interruptions,
    resolve_interruptions_sync,
    verdict_for,
)
from tests.client.server import ServedSignoff
from tests.integrations.frameworks_world import (
    POLICY_APPROVED_TOOL,
    AsyncForeignReceiptKeys,
    frameworks_server,
    unique,
)
from tests.web.test_end_to_end import free_port

__all__ = ["frameworks_server"]

set_tracing_disabled(True)  # else the SDK's trace exporter calls api.openai.com


class Database:
    """What the tools did: the tables dropped and the listings made."""

    def __init__(self) -> None:
        self.dropped: list[str] = []
        self.listed = 0

    def tools(self, client: AsyncClient | Client) -> list[Tool]:
        @function_tool(needs_approval=needs_approval("drop_table", client))
        def drop_table(table: str) -> str:
            """Drop a table."""
            self.dropped.append(table)
            return f"dropped {table}"

        @function_tool
        def list_tables() -> str:
            """List the tables."""
            self.listed += 1
            return "users, events"

        return [drop_table, gate(list_tables, client)]


def scripted_agent(
    database: Database, client: AsyncClient | Client, tool: str, arguments: dict[str, Any]
) -> tuple[Agent[Any], ScriptedModel, str]:
    """An agent whose model calls ``tool`` once, then answers "done"; and the call's id."""
    call_id = unique("call")
    model = ScriptedModel(
        [[function_call(tool, arguments, call_id=call_id)], [assistant_message("done")]]
    )
    return Agent(name="dba", model=model, tools=database.tools(client)), model, call_id


def tool_output_sent_to(model: ScriptedModel, call_id: str) -> str:
    """What the model was given as the output of its call ``call_id``."""
    last = model.last_call
    assert last is not None
    outputs = [
        item["output"]
        for item in last.input
        if isinstance(item, dict)
        and item.get("type") == "function_call_output"
        and item.get("call_id") == call_id
    ]
    assert len(outputs) == 1, last.input
    return str(outputs[0])


async def pending_request(served: ServedSignoff, title: str) -> dict[str, Any]:
    return await asyncio.to_thread(served.pending_titled, title)


async def test_a_gated_call_pauses_and_runs_once_alice_approves_in_the_inbox(
    frameworks_server,
):
    database = Database()
    table = unique("events")
    async with AsyncClient(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        agent, model, call_id = scripted_agent(database, signoff, "drop_table", {"table": table})
        paused = await Runner.run(agent, "drop the old events table")
        assert paused.final_output is None
        assert [item.call_id for item in paused.interruptions] == [call_id]
        assert database.dropped == []
        # The agent process need not outlive the wait: the state goes to JSON and back.
        saved = json.dumps(paused.to_state().to_json())
        state = await RunState.from_json(agent, json.loads(saved))

        title = call_title("drop_table", {"table": table})
        asked = await pending_request(frameworks_server, title)
        assert (asked["action"], asked["params"]) == ("openai-agents.drop_table", {"table": table})
        resolving = asyncio.create_task(resolve_interruptions(state, signoff))
        await asyncio.to_thread(frameworks_server.approve, asked["id"], "alice")
        resumed = await Runner.run(agent, await resolving)

    assert resumed.final_output == "done"
    assert database.dropped == [table]
    assert tool_output_sent_to(model, call_id) == f"dropped {table}"
    # needs_approval filed it, resolve_interruptions found the same request: one card.
    (only,) = await asyncio.to_thread(frameworks_server.requests_titled, title)
    assert (only["id"], only["status"]) == (asked["id"], "approved")


async def test_a_call_bob_denies_does_not_run_and_the_model_reads_his_reason(
    frameworks_server,
):
    database = Database()
    table = unique("users")
    async with AsyncClient(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        agent, model, call_id = scripted_agent(database, signoff, "drop_table", {"table": table})
        paused = await Runner.run(agent, "drop users")
        asked = await pending_request(frameworks_server, call_title("drop_table", {"table": table}))
        await asyncio.to_thread(frameworks_server.deny, asked["id"], "bob", "users is still in use")
        resumed = await Runner.run(agent, await resolve_interruptions(paused, signoff))

    assert resumed.final_output == "done"
    assert database.dropped == []
    told = tool_output_sent_to(model, call_id)
    assert told.startswith("Not run: denied by bob: users is still in use")
    assert asked["id"] in told


async def test_a_call_the_policy_approves_never_pauses(frameworks_server):
    database = Database()
    async with AsyncClient(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        agent, model, call_id = scripted_agent(database, signoff, POLICY_APPROVED_TOOL, {})
        result = await Runner.run(agent, "what tables are there?")

    assert result.interruptions == []
    assert result.final_output == "done"
    assert database.listed == 1
    assert tool_output_sent_to(model, call_id) == "users, events"
    asked = await asyncio.to_thread(
        frameworks_server.requests_titled, call_title(POLICY_APPROVED_TOOL, {})
    )
    assert any(
        (r["status"], r["policy"], r["action"])
        == ("approved", "reads-run-at-once", "openai-agents.list_tables")
        for r in asked
    )


@pytest.fixture
def thread_event_loop() -> Iterator[None]:
    """A default event loop for this thread, closed afterwards: ``Runner.run_sync`` runs on
    the thread's default loop and leaves it open for the next run (its socket pair would
    be reported unclosed when collected)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.usefixtures("thread_event_loop")
def test_run_sync_with_a_blocking_client(frameworks_server):
    database = Database()
    table = unique("sessions")
    with Client(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        agent, _model, _call_id = scripted_agent(database, signoff, "drop_table", {"table": table})
        paused = Runner.run_sync(agent, "drop sessions")
        assert database.dropped == []
        asked = frameworks_server.pending_titled(call_title("drop_table", {"table": table}))
        frameworks_server.approve(asked["id"], "bob")
        resumed = Runner.run_sync(agent, resolve_interruptions_sync(paused, signoff))

    assert resumed.final_output == "done"
    assert database.dropped == [table]


async def test_nobody_deciding_in_time_withdraws_the_request_and_rejects_the_call(
    frameworks_server,
):
    database = Database()
    table = unique("audit")
    async with AsyncClient(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        agent, model, call_id = scripted_agent(database, signoff, "drop_table", {"table": table})
        paused = await Runner.run(agent, "drop audit")
        state = await resolve_interruptions(paused, signoff, timeout=0.3)
        resumed = await Runner.run(agent, state)

    assert database.dropped == []
    assert resumed.final_output == "done"
    assert tool_output_sent_to(model, call_id).startswith("Not run: nobody decided in time")
    (asked,) = await asyncio.to_thread(
        frameworks_server.requests_titled, call_title("drop_table", {"table": table})
    )
    assert asked["status"] == "cancelled"


async def test_signoff_out_of_reach_pauses_the_call_and_then_rejects_it():
    database = Database()
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with AsyncClient(nowhere, "so_key", retry=RetryPolicy(delays=())) as signoff:
        agent, model, call_id = scripted_agent(database, signoff, "drop_table", {"table": "users"})
        paused = await Runner.run(agent, "drop users")
        assert len(paused.interruptions) == 1  # failing closed: no approval, no run
        resumed = await Runner.run(agent, await resolve_interruptions(paused, signoff))

    assert resumed.final_output == "done"
    assert database.dropped == []
    told = tool_output_sent_to(model, call_id)
    assert told.startswith("Not run: approval for drop_table could not be obtained")


async def test_an_approval_whose_receipt_does_not_verify_runs_nothing(frameworks_server):
    database = Database()
    async with AsyncClient(
        frameworks_server.base_url,
        frameworks_server.api_key,
        transport=AsyncForeignReceiptKeys(),
    ) as signoff:
        agent, model, call_id = scripted_agent(database, signoff, POLICY_APPROVED_TOOL, {})
        paused = await Runner.run(agent, "what tables are there?")
        # The policy approved it, but no receipt proves that: the call waits instead of running.
        assert [item.call_id for item in paused.interruptions] == [call_id]
        resumed = await Runner.run(agent, await resolve_interruptions(paused, signoff))

    assert database.listed == 0
    assert resumed.final_output == "done"
    told = tool_output_sent_to(model, call_id)
    assert told.startswith("Not run: approval for list_tables could not be obtained (receipt")


# -- the decision mapping, from answers as the API writes them ---------------------------------

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def answer(status: str, **fields: Any) -> Approval:
    """A request as the API answers it."""
    data: dict[str, Any] = {
        "id": "R1",
        "status": status,
        "action": "openai-agents.drop_table",
        "title": 'drop_table(table="users")',
        "params": {"table": "users"},
        "payload_sha256": "0" * 64,
        "policy": "default",
        "level": 0,
        "created_at": NOW.isoformat(),
        "deadline": (NOW + timedelta(minutes=30)).isoformat(),
        "decided_at": None if status == "pending" else NOW.isoformat(),
        "decision": None,
        "votes": [],
    }
    data.update(fields)
    return Approval.from_json(data)


def person(verdict: str, who: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "decision": {
            "verdict": "approved" if verdict == "approve" else "denied",
            "by": who,
            "platform": "web",
            "reason": reason,
        },
        "votes": [
            {
                "person": who,
                "verdict": verdict,
                "platform": "web",
                "reason": reason,
                "cast_at": NOW.isoformat(),
            }
        ],
    }


def test_an_approval_approves():
    verdict = verdict_for(answer("approved", **person("approve", "alice")), "drop_table")
    assert (verdict.approved, verdict.message) == (True, None)


def test_an_approval_with_edited_params_is_a_rejection_naming_them():
    edited = answer(
        "approved",
        **person("approve", "alice"),
        edited_params={"table": "users_old"},
        edited_payload_sha256="1" * 64,
    )
    verdict = verdict_for(edited, "drop_table")
    assert not verdict.approved
    assert verdict.message == (
        "Not run: alice approved this call of drop_table only with changed arguments: "
        '{"table": "users_old"}. To go ahead, call drop_table again with exactly these '
        "arguments."
    )


@pytest.mark.parametrize(
    ("status", "fields", "told"),
    [
        ("denied", person("deny", "bob", "in use"), "Not run: denied by bob: in use (signoff"),
        (
            "denied",
            {"decision": {"verdict": "denied", "by": "timeout", "platform": "system"}},
            "Not run: nobody decided in time (signoff",
        ),
        (
            "denied",
            {
                "policy": "no-drops",
                "decision": {"verdict": "denied", "by": "no-drops", "platform": "system"},
            },
            "Not run: denied by the policy no-drops (signoff",
        ),
        ("expired", {}, "Not run: the request expired without a decision (signoff"),
        (
            "cancelled",
            {"decision": {"verdict": "cancelled", "by": "deploy-bot", "platform": "api"}},
            "Not run: the request was cancelled (signoff",
        ),
        ("pending", {}, "Not run: no decision yet (signoff"),
    ],
)
def test_anything_but_an_approval_rejects_saying_why(status, fields, told):
    verdict = verdict_for(answer(status, **fields), "drop_table")
    assert not verdict.approved
    assert verdict.message is not None
    assert verdict.message.startswith(told)
