"""``signoff mcp`` when an approver edited the params: the tool result carries the edited
params and their hash, and tells the model to use exactly those."""

from __future__ import annotations

import asyncio

from signoff_client.canonical import payload_sha256
from tests.client.server import unique_title
from tests.mcp.test_mcp_server import call, mcp_session


async def test_an_edited_approval_tells_the_model_to_use_the_edited_params(
    signoff_server, tmp_path
):
    title = unique_title("mcp edited")
    async with mcp_session(signoff_server, tmp_path) as session:
        tools = (await session.list_tools()).tools
        request_tool = next(tool for tool in tools if tool.name == "request_approval")
        assert "edited_params" in (request_tool.description or "")
        pending = await call(
            session,
            "request_approval",
            action="edit.resize",
            title=title,
            params={"disk": "db-1", "size_gb": 500},
        )
        assert (pending["edited_params"], pending["edited_payload_sha256"]) == (None, None)
        edited = {"disk": "db-1", "size_gb": 200}
        await asyncio.to_thread(signoff_server.approve_with_edits, pending["id"], edited)
        decided = await call(session, "get_approval", id=pending["id"])

    assert decided["status"] == "approved"
    assert decided["params"] == {"disk": "db-1", "size_gb": 500}
    assert decided["edited_params"] == edited
    assert decided["edited_payload_sha256"] == payload_sha256("edit.resize", edited)
    assert "EDITED" in decided["next_step"]
    assert "exactly edited_params" in decided["next_step"]
    assert '"size_gb": 200' in decided["next_step"]
    assert (
        "You may now perform exactly this action with exactly these params"
        not in (decided["next_step"])
    )
