"""LangChain's ``HumanInTheLoopMiddleware`` answered from signoff: a real ``create_agent``
with a fake chat model and an in-memory checkpointer, a real ``signoff serve``, and
approvers who click in the web inbox.

Both interrupt modes (``batched``: one interrupt per model turn; ``per_call``: one per
call) pause the run; ``review_interrupts`` / ``areview_interrupts`` give the command that
resumes it with each person's decision: an approved call runs, a denied one does not and
its ``ToolMessage`` carries the reason.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware, InterruptOnConfig
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from signoff_client import Approval, AsyncClient, Client
from signoff_client.langchain import (
    DecisionNotAllowed,
    GatedCall,
    areview_interrupts,
    decision_for,
    decision_for_error,
    gated_calls,
    review_interrupts,
)
from tests.client.server import ServedSignoff
from tests.integrations.frameworks_world import (
    POLICY_APPROVED_TOOL,
    ForeignReceiptKeys,
    InboxClicks,
    frameworks_server,
    unique,
)

__all__ = ["frameworks_server"]


class ScriptedChatModel(GenericFakeChatModel):
    """The fake chat model, which ``create_agent`` can bind tools to (it ignores them)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


class Warehouse:
    """The agent's tools and what they did."""

    def __init__(self) -> None:
        self.dropped: list[str] = []

    def agent(
        self,
        tool_calls: list[dict[str, Any]],
        *,
        mode: str,
        drop_table_decisions: list[Any] | None = None,
    ) -> Any:
        @tool
        def drop_table(table: str) -> str:
            """Drop a table."""
            self.dropped.append(table)
            return f"dropped {table}"

        @tool
        def list_tables() -> str:
            """List the tables."""
            return "users, events"

        model = ScriptedChatModel(
            messages=iter([AIMessage("", tool_calls=tool_calls), AIMessage("done")])
        )
        drop_review: bool | InterruptOnConfig = True
        if drop_table_decisions is not None:
            drop_review = InterruptOnConfig(allowed_decisions=drop_table_decisions)
        review = HumanInTheLoopMiddleware(
            {"drop_table": drop_review, POLICY_APPROVED_TOOL: True},
            interrupt_mode=mode,  # type: ignore[arg-type]
        )
        return create_agent(
            model,
            tools=[drop_table, list_tables],
            middleware=[review],
            checkpointer=InMemorySaver(),
        )


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": unique("toolu")}


def title(name: str, table: str) -> str:
    return f'{name}(table="{table}")'


def tool_messages(output: Any) -> dict[str, ToolMessage]:
    """The run's tool messages by tool call id."""
    return {
        message.tool_call_id: message
        for message in output.value["messages"]
        if isinstance(message, ToolMessage)
    }


def requests_titled(served: ServedSignoff, text: str) -> list[dict[str, Any]]:
    return served.requests_titled(text)


@pytest.mark.parametrize("mode", ["batched", "per_call"])
def test_alice_approves_one_call_and_bob_denies_the_other(frameworks_server, mode):
    warehouse = Warehouse()
    keep, drop = unique("events"), unique("users")
    calls = [
        call("drop_table", table=drop),
        call("drop_table", table=keep),
        call(POLICY_APPROVED_TOOL),
    ]
    agent = warehouse.agent(calls, mode=mode)
    config = {"configurable": {"thread_id": unique("thread")}}
    paused = agent.invoke({"messages": [("user", "tidy up")]}, config, version="v2")
    assert len(paused.interrupts) == (1 if mode == "batched" else 3)
    assert warehouse.dropped == []

    clicks = InboxClicks(
        frameworks_server,
        [
            (title("drop_table", drop), "approve", "alice", None),
            (title("drop_table", keep), "deny", "bob", "events are still read"),
        ],
    )
    with Client(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        command = review_interrupts(paused, signoff, config=config)
        # Reviewing the same interrupts again (a retry, another process) asks nothing new.
        assert review_interrupts(paused, signoff, config=config) == command
    clicks.finish()
    done = agent.invoke(command, config, version="v2")

    assert done.interrupts == ()
    assert done.value["messages"][-1].content == "done"
    assert warehouse.dropped == [drop]
    told = tool_messages(done)
    assert told[calls[0]["id"]].content == f"dropped {drop}"
    assert told[calls[1]["id"]].status == "error"
    assert str(told[calls[1]["id"]].content).startswith(
        "User rejected the tool call for `drop_table` with reason: Not run: denied by bob: "
        "events are still read (signoff request "
    )
    assert told[calls[2]["id"]].content == "users, events"  # the policy approved it
    for table in (drop, keep):
        assert len(requests_titled(frameworks_server, title("drop_table", table))) == 1
    (listed, *_) = [
        r
        for r in requests_titled(frameworks_server, f"{POLICY_APPROVED_TOOL}()")
        if r["params"] == {}
    ]
    assert (listed["action"], listed["policy"]) == ("langchain.list_tables", "reads-run-at-once")


@pytest.mark.parametrize("mode", ["batched", "per_call"])
async def test_ainvoke_with_the_async_client(frameworks_server, mode):
    warehouse = Warehouse()
    table = unique("sessions")
    agent = warehouse.agent([call("drop_table", table=table)], mode=mode)
    config = {"configurable": {"thread_id": unique("thread")}}
    paused = await agent.ainvoke({"messages": [("user", "drop sessions")]}, config, version="v2")
    async with AsyncClient(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        reviewing = asyncio.create_task(areview_interrupts(paused, signoff, config=config))
        asked = await asyncio.to_thread(
            frameworks_server.pending_titled, title("drop_table", table)
        )
        assert asked["action"] == "langchain.drop_table"
        await asyncio.to_thread(frameworks_server.approve, asked["id"], "bob")
        done = await agent.ainvoke(await reviewing, config, version="v2")

    assert warehouse.dropped == [table]
    assert done.value["messages"][-1].content == "done"


def test_a_denial_where_only_respond_refuses_answers_for_the_tool(frameworks_server):
    warehouse = Warehouse()
    table = unique("orders")
    calls = [call("drop_table", table=table)]
    agent = warehouse.agent(calls, mode="per_call", drop_table_decisions=["approve", "respond"])
    config = {"configurable": {"thread_id": unique("thread")}}
    paused = agent.invoke({"messages": [("user", "drop orders")]}, config, version="v2")
    clicks = InboxClicks(
        frameworks_server, [(title("drop_table", table), "deny", "alice", "not today")]
    )
    with Client(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        command = review_interrupts(paused, signoff, config=config)
    clicks.finish()
    done = agent.invoke(command, config, version="v2")

    assert warehouse.dropped == []
    message = tool_messages(done)[calls[0]["id"]]
    assert str(message.content).startswith("Not run: denied by alice: not today")


def test_a_denial_that_the_review_cannot_express_keeps_the_run_paused(frameworks_server):
    warehouse = Warehouse()
    table = unique("ledger")
    agent = warehouse.agent(
        [call("drop_table", table=table)], mode="batched", drop_table_decisions=["approve"]
    )
    config = {"configurable": {"thread_id": unique("thread")}}
    paused = agent.invoke({"messages": [("user", "drop ledger")]}, config, version="v2")
    clicks = InboxClicks(frameworks_server, [(title("drop_table", table), "deny", "bob", None)])
    with (
        Client(frameworks_server.base_url, frameworks_server.api_key) as signoff,
        pytest.raises(DecisionNotAllowed, match=r"allows only \['approve'\]"),
    ):
        review_interrupts(paused, signoff, config=config)
    clicks.finish()
    assert warehouse.dropped == []
    assert agent.get_state(config).interrupts  # still waiting for an answer


def test_an_approval_whose_receipt_does_not_verify_is_rejected(frameworks_server):
    warehouse = Warehouse()
    table = unique("payments")
    calls = [call("drop_table", table=table)]
    agent = warehouse.agent(calls, mode="per_call")
    config = {"configurable": {"thread_id": unique("thread")}}
    paused = agent.invoke({"messages": [("user", "drop payments")]}, config, version="v2")
    clicks = InboxClicks(
        frameworks_server, [(title("drop_table", table), "approve", "alice", None)]
    )
    with Client(
        frameworks_server.base_url, frameworks_server.api_key, transport=ForeignReceiptKeys()
    ) as signoff:
        command = review_interrupts(paused, signoff, config=config)
    clicks.finish()
    done = agent.invoke(command, config, version="v2")

    assert warehouse.dropped == []
    assert str(tool_messages(done)[calls[0]["id"]].content).startswith(
        "User rejected the tool call for `drop_table` with reason: Not run: approval for "
        "drop_table could not be obtained (receipt refused"
    )


async def test_nobody_deciding_in_time_withdraws_the_request_and_rejects_the_call(
    frameworks_server,
):
    warehouse = Warehouse()
    table = unique("archive")
    calls = [call("drop_table", table=table)]
    agent = warehouse.agent(calls, mode="batched")
    config = {"configurable": {"thread_id": unique("thread")}}
    paused = await agent.ainvoke({"messages": [("user", "drop archive")]}, config, version="v2")
    async with AsyncClient(frameworks_server.base_url, frameworks_server.api_key) as signoff:
        command = await areview_interrupts(paused, signoff, config=config, timeout=0.3)
    done = await agent.ainvoke(command, config, version="v2")

    assert warehouse.dropped == []
    assert str(tool_messages(done)[calls[0]["id"]].content).startswith(
        "User rejected the tool call for `drop_table` with reason: Not run: nobody decided in "
        "time (signoff request "
    )
    (asked,) = await asyncio.to_thread(
        frameworks_server.requests_titled, title("drop_table", table)
    )
    assert asked["status"] == "cancelled"


def test_the_thread_id_is_required():
    with (
        Client("http://127.0.0.1:9", "so_key") as signoff,
        pytest.raises(ValueError, match="thread_id"),
    ):
        review_interrupts((), signoff, config={})


# -- reading interrupts and mapping decisions, from crafted values -----------------------------

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def answer(status: str, **fields: Any) -> Approval:
    data: dict[str, Any] = {
        "id": "R1",
        "status": status,
        "action": "langchain.drop_table",
        "title": 'drop_table(table="users")',
        "params": {"table": "users"},
        "payload_sha256": "0" * 64,
        "policy": "default",
        "level": 0,
        "created_at": NOW.isoformat(),
        "deadline": (NOW + timedelta(minutes=30)).isoformat(),
        "decided_at": NOW.isoformat(),
        "decision": None,
        "votes": [],
    }
    data.update(fields)
    return Approval.from_json(data)


def decided_by(verdict: str, who: str, reason: str | None = None) -> dict[str, Any]:
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


APPROVED = answer("approved", **decided_by("approve", "alice"))
EDITED = answer(
    "approved",
    **decided_by("approve", "alice"),
    edited_params={"table": "users_2019"},
    edited_payload_sha256="1" * 64,
)
DENIED = answer("denied", **decided_by("deny", "bob", "in use"))


def gated(*allowed: str) -> GatedCall:
    return GatedCall(
        interrupt_id="i1",
        position=0,
        name="drop_table",
        args={"table": "users"},
        description="",
        allowed_decisions=allowed,
        action="langchain.drop_table",
        title='drop_table(table="users")',
        idempotency_key="langchain:t:i1:0",
    )


EVERY_DECISION = gated("approve", "edit", "reject", "respond")


def test_an_approval_approves():
    assert decision_for(APPROVED, EVERY_DECISION) == {"type": "approve"}


def test_an_edited_approval_is_an_edit_with_the_approved_args():
    assert decision_for(EDITED, EVERY_DECISION) == {
        "type": "edit",
        "edited_action": {"name": "drop_table", "args": {"table": "users_2019"}},
    }


def test_an_edited_approval_the_review_does_not_allow_is_a_rejection_naming_the_args():
    assert decision_for(EDITED, gated("approve", "reject")) == {
        "type": "reject",
        "message": "Not run: alice approved this call of drop_table only with changed "
        'arguments: {"table": "users_2019"}, which this tool\'s review does not accept. '
        "To go ahead, call drop_table again with exactly these arguments.",
    }


def test_an_approval_where_only_edit_runs_is_an_edit_with_the_models_args():
    assert decision_for(APPROVED, gated("edit", "reject")) == {
        "type": "edit",
        "edited_action": {"name": "drop_table", "args": {"table": "users"}},
    }


def test_a_denial_rejects_with_who_and_why():
    decision = decision_for(DENIED, EVERY_DECISION)
    assert decision["type"] == "reject"
    assert decision["message"].startswith("Not run: denied by bob: in use (signoff request R1)")


def test_an_error_rejects_saying_so():
    decision = decision_for_error(OSError("connection refused"), EVERY_DECISION)
    assert decision == {
        "type": "reject",
        "message": "Not run: approval for drop_table could not be obtained (connection refused).",
    }


def test_a_denial_that_cannot_be_expressed_raises():
    with pytest.raises(DecisionNotAllowed, match="none of which refuses it"):
        decision_for(DENIED, gated("approve", "edit"))


def test_allowed_decisions_are_read_from_both_interrupt_shapes():
    from langgraph.types import Interrupt

    batched = Interrupt(
        value={
            "action_requests": [{"name": "drop_table", "args": {"table": "a"}, "description": ""}],
            "review_configs": [
                {"action_name": "drop_table", "allowed_decisions": ["approve", "reject"]}
            ],
        },
        id="b1",
    )
    per_call = Interrupt(
        value={"type": "tool_approval", "tool_call_id": "tc9", "name": "drop_table", "args": {}},
        id="p1",
        response_schema={"properties": {"type": {"const": "approve"}}},
    )
    first, second = gated_calls([batched, per_call], thread_id="t 1")
    assert (first.allowed_decisions, first.idempotency_key) == (
        ("approve", "reject"),
        "langchain:sha256:" + first.idempotency_key.rsplit(":", 1)[1],
    )
    assert (second.allowed_decisions, second.position) == (("approve",), None)
    assert gated_calls([per_call], thread_id="t1")[0].idempotency_key == "langchain:t1:p1:tc9"
