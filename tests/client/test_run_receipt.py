"""``signoff run`` checks the signed receipt before it runs anything.

The command talks to a real server through a transport that tampers with what comes back,
as something between the command and signoff could: the command must refuse to run.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx

from bot.cli_client import ApprovalClient, ClientSettings, run_command
from signoff_client import verify_receipt
from tests.client.server import ServedSignoff, unique_title
from tests.client.signing import SigningKey


class TamperingTransport(httpx.HTTPTransport):
    """Forwards to the real server and replaces the answers to chosen paths."""

    def __init__(self, replace: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.replace = replace
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        response = super().handle_request(request)
        for suffix, body in self.replace.items():
            if request.url.path.endswith(suffix) and response.status_code == 200:
                response.close()
                return httpx.Response(200, json=body)
        return response


def approve_when_asked(server: ServedSignoff, title: str) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: server.approve(server.pending_titled(title)["id"]), daemon=True
    )
    thread.start()
    return thread


def run_through(server: ServedSignoff, transport: httpx.BaseTransport, title: str, argv) -> int:
    client = ApprovalClient(
        ClientSettings(base_url=server.base_url, api_key=server.api_key), transport=transport
    )
    return run_command(
        argv,
        action="deploy.script",
        title=title,
        details="",
        requested_by=None,
        timeout_seconds=None,
        client=client,
    )


def test_run_refuses_when_the_receipt_is_signed_by_a_key_signoff_does_not_publish(
    signoff_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    title = unique_title("run")
    impostor_keys = {"keys": [SigningKey().entry()]}
    transport = TamperingTransport({"/v1/receipt-keys": impostor_keys})
    person = approve_when_asked(signoff_server, title)
    code = run_through(signoff_server, transport, title, ["touch", "marker.txt"])
    person.join(timeout=30)
    assert code == 2
    assert not (tmp_path / "marker.txt").exists()
    assert "unknown key" in capsys.readouterr().err
    assert any(path.endswith("/receipt") for path in transport.paths)


def test_run_refuses_another_requests_receipt_for_the_same_command(
    signoff_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = ["touch", "marker.txt"]
    # An earlier approval of the very same command, whose receipt is genuine.
    first_title = unique_title("run")
    person = approve_when_asked(signoff_server, first_title)
    assert run_through(signoff_server, httpx.HTTPTransport(), first_title, argv) == 0
    person.join(timeout=30)
    (tmp_path / "marker.txt").unlink()
    first = signoff_server.requests_titled(first_title)[0]
    with signoff_server.api() as api:
        old_receipt = api.get(f"/v1/approvals/{first['id']}/receipt").json()

    second_title = unique_title("run")
    transport = TamperingTransport({"/receipt": old_receipt})
    person = approve_when_asked(signoff_server, second_title)
    code = run_through(signoff_server, transport, second_title, argv)
    person.join(timeout=30)
    assert code == 2
    assert not (tmp_path / "marker.txt").exists()
    assert "is for request" in capsys.readouterr().err
    # The replayed receipt is genuine, only not this request's.
    with signoff_server.api() as api:
        keys = api.get("/v1/receipt-keys").json()
    params = {"argv": argv, "cwd": os.getcwd()}
    assert verify_receipt(old_receipt, "deploy.script", params, keys, request_id=first["id"])
