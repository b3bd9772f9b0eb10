"""A TCP proxy on 127.0.0.1 that misbehaves on purpose, to show the client rides it out.

Each new client connection takes the next fault from a plan; once the plan is used up,
connections are forwarded faithfully. Faults:

- ``drop``: close the connection at once, before reading anything;
- ``503``: answer ``503 Service Unavailable`` (``Retry-After: 0``) without forwarding;
- ``swallow``: forward the request, let the server answer it, then close the connection
  without passing the answer on (the request took effect; the client cannot know).

``cut()`` makes an outage: open connections are broken and every new one is dropped.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterable

_REQUEST_LINE = re.compile(rb"(?:GET|HEAD|POST|PUT|PATCH|DELETE) /\S* HTTP/1\.[01]")


def _busy_answer() -> bytes:
    body = b'{"error": {"code": "unavailable", "message": "busy, try again now"}}'
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class FlakyProxy:
    """Listens on 127.0.0.1 and forwards to ``upstream_port``, with planned faults."""

    def __init__(self, upstream_port: int, plan: Iterable[str] = ()) -> None:
        self.upstream_port = upstream_port
        self._plan = list(plan)
        self._lock = threading.Lock()
        self.connections = 0
        self.faults: list[str] = []
        self._down = False
        self._sent = bytearray()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="flaky-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def has_sent(self, data: bytes) -> bool:
        """True once ``data`` was part of a request passed on to the server."""
        with self._lock:
            return data in self._sent

    def request_lines(self) -> list[str]:
        """The request lines passed on to the server so far, in order
        (``POST /v1/approvals HTTP/1.1``)."""
        with self._lock:
            sent = bytes(self._sent)
        return [line.decode() for line in _REQUEST_LINE.findall(sent)]

    def open_connections(self) -> int:
        """How many client connections are being forwarded now."""
        with self._lock:
            return len(self._open)

    def _record(self, data: bytes) -> None:
        with self._lock:
            self._sent += data

    def cut(self) -> None:
        """From now on the server is unreachable: break open connections, drop new ones."""
        with self._lock:
            self._down = True
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                fault = self._plan.pop(0) if self._plan else None
                if self._down:
                    fault = "drop"
                if fault:
                    self.faults.append(fault)
            threading.Thread(target=self._serve, args=(client, fault), daemon=True).start()

    def _serve(self, client: socket.socket, fault: str | None) -> None:
        with client:
            if fault == "drop":
                return
            with self._lock:
                self._open.add(client)
            try:
                self._forward(client, fault)
            finally:
                with self._lock:
                    self._open.discard(client)

    def _forward(self, client: socket.socket, fault: str | None) -> None:
        with contextlib.suppress(OSError):
            request = _read_request(client)
            if fault == "503":
                client.sendall(_busy_answer())
                return
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                self._record(request)
                upstream.sendall(request)
                if fault == "swallow":
                    upstream.recv(1)  # the server has answered: the request took effect
                    return
                self._pipe(client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        def copy(source: socket.socket, target: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    if source is client:
                        self._record(data)
                    target.sendall(data)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=copy, args=(upstream, client), daemon=True)
        back.start()
        copy(client, upstream)
        back.join()


def _read_request(client: socket.socket) -> bytes:
    """One HTTP/1.1 request with its Content-Length body (all the client sends first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
