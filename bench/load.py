"""A closed-loop HTTP load generator: N keep-alive connections, each sending its next request
when the previous one is answered, for a fixed time. Every server compared is driven by it.

It speaks just enough HTTP/1.1 over asyncio streams to post a JSON body and read a response
with a ``Content-Length``. A general-purpose client costs far more per request (httpx's
pool spends milliseconds of CPU per request at 64 connections on this machine), which on a
two-core machine would measure the client rather than the servers.

Each request's body comes from a :data:`Body` function, so that each can differ: signoff
answers an ask identical to one still pending with that pending request, so a benchmark of
creates gives every request a payload of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.harness import percentile

HEADER_END = b"\r\n\r\n"

Body = Callable[[], bytes]
"""Makes the body of the next request (called once per request sent)."""


@dataclass
class LoadResult:
    """What one load run saw in its measurement window (the warm-up is left out)."""

    connections: int
    window: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    statuses: Counter[int] = field(default_factory=Counter)
    """How often each unexpected HTTP status was answered in the window."""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.window

    def p(self, share: float) -> float:
        return percentile(self.latencies, share) if self.latencies else float("nan")

    def then(self, other: LoadResult) -> LoadResult:
        """Two runs one after the other, with the same connections, as one."""
        return LoadResult(
            connections=self.connections,
            window=self.window + other.window,
            latencies=self.latencies + other.latencies,
            errors=self.errors + other.errors,
            first_error=self.first_error or other.first_error,
            statuses=self.statuses + other.statuses,
        )

    def merged(self, other: LoadResult) -> LoadResult:
        """Two runs over the same window at once (two servers) as one."""
        return LoadResult(
            connections=self.connections + other.connections,
            window=self.window,
            latencies=self.latencies + other.latencies,
            errors=self.errors + other.errors,
            first_error=self.first_error or other.first_error,
            statuses=self.statuses + other.statuses,
        )


class ProtocolError(Exception):
    """The server answered something this small client does not read."""


def post_requests(
    host: str, port: int, path: str, headers: Mapping[str, str]
) -> Callable[[bytes], bytes]:
    """A function from a JSON body to the bytes of one keep-alive ``POST`` with it: the head
    is formatted once, only its ``Content-Length`` per body."""
    before = "\r\n".join(
        [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json", ""]
    ).encode("latin-1")
    after = "".join(f"\r\n{name}: {value}" for name, value in headers.items()) + "\r\n\r\n"
    tail = after.encode("latin-1")

    def request(body: bytes) -> bytes:
        return before + b"Content-Length: %d" % len(body) + tail + body

    return request


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response that has a ``Content-Length``."""
    head = await reader.readuntil(HEADER_END)
    status_line, *header_lines = head[: -len(HEADER_END)].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    length = None
    for line in header_lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked responses are not read by this client")
    if length is None:
        raise ProtocolError("a response without Content-Length")
    body = await reader.readexactly(length) if length else b""
    return int(parts[1]), body


async def closed_loop(
    base_url: str,
    path: str,
    body: Body,
    *,
    connections: int,
    warmup: float,
    duration: float,
    headers: Mapping[str, str],
    expect_status: int = 201,
) -> LoadResult:
    """POST to ``path`` over ``connections`` keep-alive connections, each request with the
    next body ``body()`` makes.

    Requests answered within ``[warmup, warmup + duration)`` count; anything but
    ``expect_status`` counts as an error. A connection that fails is opened again.
    """
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = post_requests(host, port, path, headers)
    result = LoadResult(connections=connections, window=duration)
    started = time.perf_counter()
    window_start = started + warmup
    window_end = window_start + duration

    def note_error(problem: str) -> None:
        result.errors += 1
        result.first_error = result.first_error or problem

    async def connection() -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            while (sent := time.perf_counter()) < window_end:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    writer.write(request(body()))
                    status, answer = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                    if writer is not None:
                        writer.close()
                        writer = None
                    if window_start <= time.perf_counter() < window_end:
                        note_error(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.01)  # a server that refuses is not hammered
                    continue
                answered = time.perf_counter()
                if not window_start <= answered < window_end:
                    continue
                if status == expect_status:
                    result.latencies.append(answered - sent)
                else:
                    result.statuses[status] += 1
                    note_error(f"{status}: {answer[:200].decode('utf-8', 'replace')}")
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return result
