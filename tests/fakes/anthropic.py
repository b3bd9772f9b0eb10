"""A fake Anthropic Messages API on 127.0.0.1, with a scripted model, for the real Claude Code.

The Claude Code CLI, pointed here with ``ANTHROPIC_BASE_URL``, posts the whole conversation
to ``POST /v1/messages`` (``?beta=true``, ``"stream": true``) on every turn and reads the
answer as server-sent events: ``message_start``, per content block ``content_block_start``,
``content_block_delta`` (``text_delta``, or ``input_json_delta`` for a ``tool_use``) and
``content_block_stop``, then ``message_delta`` (``stop_reason`` ``tool_use`` or
``end_turn``, with usage) and ``message_stop``. A request without ``"stream": true`` gets
the same message as one JSON body; ``POST /v1/messages/count_tokens`` gets a count.

The model is a *script*: a function from the conversation so far (:class:`Conversation`:
the tools offered and the tool results received, each with the call it answers) to the
next assistant turn, a :class:`ToolCall` or a :class:`Say` that ends the turn. With
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` the CLI (2.1.337) sends only the agent's
turns, each offering the tools; a request that offers none (a side question, such as a title
for the session) gets a short text and never reaches the script.

Every request is recorded (:attr:`FakeAnthropic.requests`), and every tool call with the
monotonic times the model sent it and the tool result came back, so a test can assert what
the model was shown and how long a tool took. A script that raises is answered with an
ending text (so the CLI stops at once) and the error is kept in
:attr:`FakeAnthropic.script_errors`.

The server runs in its own thread (``http.server``); state is guarded by a lock.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """The model's turn: call the tool ``name`` with ``input``."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Say:
    """The model's turn: this text, and the turn ends."""

    text: str


Turn = ToolCall | Say


@dataclass
class ToolResult:
    """A tool call the model made and the result the CLI sent back for it."""

    call_id: str
    name: str
    input: dict[str, Any]
    text: str
    is_error: bool
    took: float | None
    """Seconds from the model sending the call to the CLI sending its result."""

    def json(self) -> Any:
        """The result's text as JSON (signoff's tools answer in JSON)."""
        return json.loads(self.text)


@dataclass
class Conversation:
    """What a script sees: the tools offered and the results of the calls made so far."""

    tools: list[str]
    results: list[ToolResult]
    body: dict[str, Any]

    @property
    def last(self) -> ToolResult | None:
        return self.results[-1] if self.results else None


Script = Callable[[Conversation], Turn]


@dataclass
class ModelRequest:
    """One request the CLI made, as received, and the turn it was answered with."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    answer: Turn | None = None

    @property
    def tools(self) -> list[str]:
        return [tool.get("name", "") for tool in self.body.get("tools") or []]


@dataclass
class _SentCall:
    name: str
    input: dict[str, Any]
    sent_at: float
    returned_at: float | None = None


def _text_of(content: Any) -> str:
    """A tool_result's content as text: a string, or the text of its text blocks."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if block.get("type") == "text")


@dataclass
class FakeAnthropic:
    """The fake API; ``with FakeAnthropic(script) as fake:`` serves it at ``fake.url``."""

    script: Script
    model: str = "claude-fake-model"
    requests: list[ModelRequest] = field(default_factory=list)
    script_errors: list[BaseException] = field(default_factory=list)
    _calls: dict[str, _SentCall] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _id_prefix: str = field(default_factory=lambda: f"toolu_fake_{secrets.token_hex(6)}")
    """Tool call ids differ between fakes, as the real API's do: tests that share one
    signoff server use them in idempotency keys."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, content_type, payload = fake._answer(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the recorded requests are the log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, name="fake-anthropic", daemon=True
        ).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- what tests look at ---------------------------------------------------------------

    def turns(self) -> list[ModelRequest]:
        """The requests that reached the script (the agent's own turns), in order."""
        with self._lock:
            return [r for r in self.requests if r.body.get("tools") and "messages" in r.body]

    def results(self) -> list[ToolResult]:
        """Every tool result the model received, in order."""
        turns = self.turns()
        return self._conversation(turns[-1].body).results if turns else []

    def calls_sent(self, name: str | None = None) -> int:
        """How many tool calls (named ``name``, or any) the model has sent."""
        with self._lock:
            return sum(1 for call in self._calls.values() if name in (None, call.name))

    # -- serving ---------------------------------------------------------------------------

    def _answer(
        self, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, str, bytes]:
        route = path.split("?", 1)[0]
        if route == "/v1/messages/count_tokens":
            tokens = max(1, len(json.dumps(body)) // 4)
            return 200, "application/json", json.dumps({"input_tokens": tokens}).encode()
        if route != "/v1/messages":
            return 404, "application/json", b'{"type": "error", "error": {"type": "not_found"}}'
        request = ModelRequest(route, headers, body, time.monotonic())
        with self._lock:
            self.requests.append(request)
        turn = self._next_turn(body) if body.get("tools") else Say("Fake model.")
        request.answer = turn
        call_id = None
        if isinstance(turn, ToolCall):
            call_id = f"{self._id_prefix}_{next(self._ids):04d}"
            with self._lock:
                self._calls[call_id] = _SentCall(turn.name, turn.input, time.monotonic())
        message = _message(turn, call_id, body.get("model") or self.model)
        if body.get("stream"):
            return 200, "text/event-stream", _events(message)
        return 200, "application/json", json.dumps(message).encode()

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        conversation = self._conversation(body)
        try:
            return self.script(conversation)
        except Exception as exc:  # the test reads it; the CLI must stop, not retry
            with self._lock:
                self.script_errors.append(exc)
            return Say(f"The fake model's script failed: {exc!r}")

    def _conversation(self, body: dict[str, Any]) -> Conversation:
        now = time.monotonic()
        results = []
        for message in body.get("messages", []):
            content = message.get("content")
            if message.get("role") != "user" or not isinstance(content, list):
                continue
            for block in content:
                if block.get("type") != "tool_result":
                    continue
                call_id = block.get("tool_use_id", "")
                with self._lock:
                    sent = self._calls.get(call_id)
                    if sent is not None and sent.returned_at is None:
                        sent.returned_at = now
                results.append(
                    ToolResult(
                        call_id=call_id,
                        name=sent.name if sent else "",
                        input=sent.input if sent else {},
                        text=_text_of(block.get("content")),
                        is_error=bool(block.get("is_error")),
                        took=(
                            sent.returned_at - sent.sent_at
                            if sent and sent.returned_at is not None
                            else None
                        ),
                    )
                )
        tools = [tool.get("name", "") for tool in body.get("tools") or []]
        return Conversation(tools=tools, results=results, body=body)


def _message(turn: Turn, call_id: str | None, model: str) -> dict[str, Any]:
    """The assistant message for ``turn``, as the Messages API returns it."""
    if isinstance(turn, ToolCall):
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": call_id,
            "name": turn.name,
            "input": turn.input,
        }
        stop_reason = "tool_use"
    else:
        block = {"type": "text", "text": turn.text}
        stop_reason = "end_turn"
    return {
        "id": f"msg_fake_{call_id or time.monotonic_ns()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 10},
    }


def _events(message: dict[str, Any]) -> bytes:
    """``message`` as the server-sent events the Messages API streams (each event named by
    its ``type``)."""
    start = {**message, "content": [], "stop_reason": None}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opened = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opened = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        events += [
            {"type": "content_block_start", "index": index, "content_block": opened},
            {"type": "content_block_delta", "index": index, "delta": delta},
            {"type": "content_block_stop", "index": index},
        ]
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": message["usage"],
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
