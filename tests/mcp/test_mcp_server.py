"""``signoff mcp`` as a real subprocess, driven by the official MCP client over stdio.

The MCP server talks to a real ``signoff serve``; people decide in its web inbox.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from tests.client.proxy import FlakyProxy
from tests.client.server import ServedSignoff, unique_title
from tests.web.test_end_to_end import SIGNOFF, free_port

TOOL_WAIT_SECONDS = 2


@asynccontextmanager
async def mcp_session(
    served: ServedSignoff, tmp_path, wait_seconds: int = TOOL_WAIT_SECONDS, **env: str
) -> AsyncIterator[ClientSession]:
    parameters = StdioServerParameters(
        command=str(SIGNOFF),
        args=["mcp", "--wait-seconds", str(wait_seconds)],
        env=served.environ(**env),
    )
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with (
            stdio_client(parameters, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    """The text of a tool result's first content block (signoff answers in text)."""
    content = result.content[0]
    assert isinstance(content, TextContent), content
    return content.text


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    # The same result, as structured content and as JSON text for clients without it.
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content


async def test_lists_the_four_tools_with_instructions_to_wait_and_never_proceed_unapproved(
    signoff_server, tmp_path
):
    async with mcp_session(signoff_server, tmp_path) as session:
        listed = await session.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {
        "request_approval",
        "get_approval",
        "list_pending_approvals",
        "cancel_approval",
    }
    request = tools["request_approval"]
    assert set(request.input_schema["required"]) == {"action", "title"}
    assert {"details", "params", "timeout_seconds"} <= set(request.input_schema["properties"])
    assert request.description is not None
    assert "get_approval" in request.description
    assert 'unless the status is "approved"' in request.description
    get_description = tools["get_approval"].description
    assert get_description is not None
    assert "pending" in get_description
    assert tools["get_approval"].input_schema["required"] == ["id"]
    assert request.output_schema is not None
    assert "next_step" in request.output_schema["properties"]


async def test_the_server_names_its_version(signoff_server, tmp_path):
    async with mcp_session(signoff_server, tmp_path) as session:
        info = session.server_info
    assert info is not None
    assert (info.name, info.version) == ("signoff", importlib.metadata.version("signoff"))


async def test_request_is_pending_then_get_after_approval_returns_approved(
    signoff_server, tmp_path
):
    title = unique_title("mcp")
    async with mcp_session(signoff_server, tmp_path) as session:
        pending = await call(
            session,
            "request_approval",
            action="db.drop_table",
            title=title,
            details="cleanup after the migration",
            params={"table": "users_old", "ticket": title},
        )
        assert pending["status"] == "pending"
        assert pending["params"] == {"table": "users_old", "ticket": title}
        assert "get_approval" in pending["next_step"]
        assert "Do NOT perform" in pending["next_step"]

        await asyncio.to_thread(signoff_server.approve, pending["id"], "alice", "fine")
        decided = await call(session, "get_approval", id=pending["id"])
    assert decided["status"] == "approved"
    assert decided["decided_by"] == "alice"
    assert decided["reason"] == "fine"
    assert decided["payload_sha256"] == pending["payload_sha256"]
    assert "You may now perform exactly this action" in decided["next_step"]


async def test_a_decision_during_the_bounded_wait_is_returned_by_request_itself(
    signoff_server, tmp_path
):
    title = unique_title("mcp")
    async with mcp_session(signoff_server, tmp_path) as session:

        async def deny_once_asked() -> None:
            asked = await asyncio.to_thread(signoff_server.pending_titled, title)
            await asyncio.to_thread(signoff_server.deny, asked["id"], "bob", "not today")

        denying = asyncio.create_task(deny_once_asked())
        # The tool call waits longer than the test takes to deny.
        result = await session.call_tool(
            "request_approval",
            {"action": "deploy.web", "title": title, "params": {"ticket": title}},
        )
        await denying
    decided = result.structured_content
    if decided["status"] == "pending":  # the wait ended just before the click
        pytest.fail("the denial did not arrive within the tool's bounded wait")
    assert decided["status"] == "denied"
    assert decided["decided_by"] == "bob"
    assert "Do NOT perform the action" in decided["next_step"]


async def test_a_denial_after_an_approval_names_the_denier_and_the_reason(signoff_server, tmp_path):
    async with mcp_session(signoff_server, tmp_path) as session:
        title = unique_title("mcp")
        pending = await call(
            session, "request_approval", action="pair.deploy", title=title, params={"t": title}
        )
        await asyncio.to_thread(signoff_server.approve, pending["id"], "alice", "fine by me")
        await asyncio.to_thread(signoff_server.deny, pending["id"], "bob", "freeze until Monday")
        decided = await call(session, "get_approval", id=pending["id"])
    assert decided["status"] == "denied"
    assert decided["decided_by"] == "bob"
    assert decided["reason"] == "freeze until Monday"
    assert decided["next_step"].startswith("Denied by bob: freeze until Monday.")
    assert "alice" not in decided["next_step"]


async def test_an_expired_request_says_nobody_decided(signoff_server, tmp_path):
    title = unique_title("mcp")
    async with mcp_session(signoff_server, tmp_path) as session:
        asked = await call(
            session,
            "request_approval",
            action="expire.soon",
            title=title,
            params={"ticket": title},
            timeout_seconds=1,
        )
        deadline = time.monotonic() + 30
        while asked["status"] == "pending" and time.monotonic() < deadline:
            asked = await call(session, "get_approval", id=asked["id"])  # a bounded wait
    assert asked["status"] == "expired"
    assert asked["decided_by"] is None
    assert "Nobody decided" in asked["next_step"]


async def test_cancel_withdraws_a_pending_request(signoff_server, tmp_path):
    async with mcp_session(signoff_server, tmp_path) as session:
        title = unique_title("mcp")
        pending = await call(
            session, "request_approval", action="deploy.web", title=title, params={"t": title}
        )
        cancelled = await call(session, "cancel_approval", id=pending["id"], reason="plan changed")
        again = await call(session, "get_approval", id=pending["id"])
    assert cancelled["status"] == again["status"] == "cancelled"
    assert cancelled["reason"] == "plan changed"
    assert cancelled["decided_by"] is None
    assert "cancelled by deploy-bot: plan changed" in cancelled["next_step"]
    assert "Do NOT perform" in cancelled["next_step"]


async def test_a_cancelled_call_stops_waiting_at_once_and_the_request_is_found_again(
    signoff_server, tmp_path
):
    title = unique_title("mcp")
    params = {"ticket": title}  # this test's own payload: no other test's request is reused
    proxy = FlakyProxy(int(signoff_server.base_url.rsplit(":", 1)[1]))
    stderr = tmp_path / "mcp-stderr.log"
    try:
        async with mcp_session(
            signoff_server, tmp_path, wait_seconds=600, SIGNOFF_URL=proxy.url
        ) as session:
            # Cancelling the call makes the client send notifications/cancelled, as Claude
            # Code does when its MCP_TOOL_TIMEOUT passes or the person stops the turn.
            calling = asyncio.create_task(
                session.call_tool(
                    "request_approval", {"action": "deploy.web", "title": title, "params": params}
                )
            )
            asked = await asyncio.to_thread(signoff_server.pending_titled, title)
            deadline = time.monotonic() + 20
            while not proxy.has_sent(b"?wait="):  # the tool is waiting for a decision
                assert time.monotonic() < deadline, "the tool never started waiting"
                await asyncio.sleep(0.02)
            calling.cancel()
            with pytest.raises(asyncio.CancelledError):
                await calling

            deadline = time.monotonic() + 5
            while f"request {asked['id']} was cancelled" not in stderr.read_text():
                assert time.monotonic() < deadline, stderr.read_text()
                await asyncio.sleep(0.02)
            while proxy.open_connections():  # the long-poll to signoff was closed
                assert time.monotonic() < deadline, "the wait went on after the cancel"
                await asyncio.sleep(0.02)

            listed = await call(session, "list_pending_approvals")
    finally:
        proxy.close()
    async with mcp_session(signoff_server, tmp_path, wait_seconds=1) as session:
        again = await call(
            session, "request_approval", action="deploy.web", title=title, params=params
        )
    assert asked["status"] == "pending"
    assert asked["id"] in [approval["id"] for approval in listed["approvals"]]
    assert "get_approval" in listed["next_step"]
    assert again["id"] == asked["id"]  # asking again returns it: still one request
    assert len(await asyncio.to_thread(signoff_server.requests_titled, title)) == 1


async def test_list_pending_approvals_names_only_pending_requests(signoff_server, tmp_path):
    title = unique_title("mcp")
    async with mcp_session(signoff_server, tmp_path) as session:
        waiting = await call(
            session, "request_approval", action="deploy.web", title=title, params={"n": title}
        )
        done = await call(
            session, "request_approval", action="deploy.api", title=title, params={"n": title}
        )
        await call(session, "cancel_approval", id=done["id"])
        listed = await call(session, "list_pending_approvals")
    ids = [approval["id"] for approval in listed["approvals"]]
    assert waiting["id"] in ids
    assert done["id"] not in ids
    assert all(approval["status"] == "pending" for approval in listed["approvals"])


async def test_errors_reach_the_model_as_tool_errors(signoff_server, tmp_path):
    async with mcp_session(signoff_server, tmp_path) as session:
        missing = await session.call_tool("get_approval", {"id": "no-such-request"})
        invalid = await session.call_tool(
            "request_approval", {"action": "not an action", "title": "t"}
        )
    assert missing.is_error
    assert "not_found" in text_of(missing)
    assert invalid.is_error
    assert "HTTP 422" in text_of(invalid)


def test_signoff_mcp_starts_without_loading_the_server_side():
    # An MCP client offers the model no approval tools until the server answers, so the
    # command loads only the MCP server and the agent client: no CLI, store or config.
    probe = (
        "import atexit, sys\n"
        "heavy = ('bot.cli', 'approvals.store', 'config.', 'sqlalchemy', 'fastapi')\n"
        "loaded = lambda: sorted(m for m in sys.modules if m == 'config' or m.startswith(heavy))\n"
        "atexit.register(lambda: print(loaded()))\n"
        "sys.argv = ['signoff', 'mcp', '--wait-seconds', '0']\n"
        "from bot.entry import main\n"
        "main()\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 2, ran.stderr  # the bound was checked by the MCP server itself
    assert "--wait-seconds must be 1 to 86400" in ran.stderr
    assert ran.stdout.strip() == "[]"


def test_stdout_carries_only_the_protocol(signoff_server, tmp_path):
    """Every line the server writes to stdout is a JSON-RPC message, even with a bad key."""
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_approval", "arguments": {"id": "x"}},
        },
    ]
    errlog = tmp_path / "mcp-stderr.log"
    with errlog.open("w") as stderr:
        process = subprocess.Popen(
            [str(SIGNOFF), "mcp", "--wait-seconds", "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=signoff_server.environ(SIGNOFF_API_KEY="so_not_a_key"),
        )
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def collect() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=collect, daemon=True).start()
    answers: dict[Any, dict[str, Any]] = {}
    try:
        for message in messages:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
        deadline = time.monotonic() + 30
        # Stdin stays open until the tool call is answered: closing it ends the session.
        while 3 not in answers:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, errlog.read_text()
            answer = json.loads(line)  # anything but a JSON-RPC message fails here
            assert answer["jsonrpc"] == "2.0"
            answers[answer.get("id")] = answer
        stdin.close()
        assert process.wait(timeout=30) == 0
        rest = []
        while (line := lines.get(timeout=10)) is not None:
            rest.append(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pipe in (stdin, stdout):
            if not pipe.closed:
                pipe.close()
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in rest if line.strip())
    assert {1, 2, 3} <= set(answers)
    assert answers[3]["result"]["isError"] is True
    assert "401" in answers[3]["result"]["content"][0]["text"]


async def test_without_an_api_key_it_starts_and_every_call_says_what_to_set(
    signoff_server, tmp_path
):
    async with mcp_session(signoff_server, tmp_path, SIGNOFF_API_KEY="") as session:
        listed = await session.list_tools()
        asked = await session.call_tool(
            "request_approval", {"action": "deploy.web", "title": unique_title("mcp")}
        )
        looked = await session.call_tool("get_approval", {"id": "anything"})
        pending = await session.call_tool("list_pending_approvals", {})
    assert {tool.name for tool in listed.tools} == {
        "request_approval",
        "get_approval",
        "list_pending_approvals",
        "cancel_approval",
    }
    for result in (asked, looked, pending):
        assert result.is_error
        assert "SIGNOFF_API_KEY is not set" in text_of(result)
        assert "Do NOT perform" in text_of(result)
    assert "SIGNOFF_API_KEY is not set" in (tmp_path / "mcp-stderr.log").read_text()


async def test_an_unreachable_signoff_is_an_error_naming_signoff_url(signoff_server, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with mcp_session(signoff_server, tmp_path, SIGNOFF_URL=nowhere) as session:
        started = time.monotonic()
        result = await session.call_tool(
            "request_approval", {"action": "deploy.web", "title": unique_title("mcp")}
        )
        took = time.monotonic() - started
    assert result.is_error
    assert f"cannot reach signoff at {nowhere}" in text_of(result)
    assert "SIGNOFF_URL" in text_of(result)
    assert "not made" in text_of(result)
    assert took < TOOL_WAIT_SECONDS + 1


async def test_an_outage_during_the_wait_keeps_the_bound_and_names_the_request(
    signoff_server, tmp_path
):
    wait_seconds = 4
    title = unique_title("mcp")
    proxy = FlakyProxy(int(signoff_server.base_url.rsplit(":", 1)[1]))
    try:
        async with mcp_session(
            signoff_server, tmp_path, wait_seconds=wait_seconds, SIGNOFF_URL=proxy.url
        ) as session:

            async def cut_once_waiting() -> None:
                deadline = time.monotonic() + 20
                while not proxy.has_sent(b"?wait="):  # the create is answered; a wait began
                    assert time.monotonic() < deadline, "the tool never started waiting"
                    await asyncio.sleep(0.01)
                proxy.cut()

            cutting = asyncio.create_task(cut_once_waiting())
            started = time.monotonic()
            result = await session.call_tool(
                "request_approval",
                {"action": "deploy.web", "title": title, "params": {"ticket": title}},
            )
            took = time.monotonic() - started
            await cutting
    finally:
        proxy.close()
    assert took < wait_seconds + 1
    assert result.is_error, result.structured_content
    [asked] = signoff_server.requests_titled(title)  # one request, still pending
    assert asked["status"] == "pending"
    text = text_of(result)
    assert f"request {asked['id']} is pending" in text
    assert f"call get_approval with id {asked['id']!r}".lower() in text.lower()
    assert "do not make a new request" in text
