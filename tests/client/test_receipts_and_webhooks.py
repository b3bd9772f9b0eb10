"""Receipts and webhooks from a real server, checked with the client's verifiers."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from signoff_client import (
    ApiError,
    Client,
    ReceiptError,
    WebhookError,
    verify_receipt,
    verify_webhook,
)
from tests.client.server import ServedSignoff, unique_title


@pytest.fixture
def client(signoff_server: ServedSignoff) -> Iterator[Client]:
    with Client(signoff_server.base_url, signoff_server.api_key) as made:
        yield made


def test_an_approved_requests_receipt_verifies_for_exactly_its_payload(signoff_server, client):
    params = {"table": "users", "database": "prod"}
    asked = client.request("db.drop_table", unique_title(), params=params)
    with pytest.raises(ApiError) as early:
        client.receipt(asked.id)
    assert (early.value.status, early.value.code) == (409, "not_final")

    signoff_server.approve(asked.id, "alice")
    keys = client.receipt_keys()
    assert [key["active"] for key in keys["keys"]].count(True) == 1
    receipt = client.receipt(asked.id)
    signed = verify_receipt(receipt, "db.drop_table", params, keys, request_id=asked.id)
    assert signed["status"] == "approved"
    assert signed["deciders"] == ["alice"]
    assert client.verified_receipt(asked.id, "db.drop_table", params) == signed

    with pytest.raises(ReceiptError, match="not this action with these params"):
        client.verified_receipt(asked.id, "db.drop_table", {**params, "table": "orders"})


def test_a_denied_requests_receipt_proves_the_denial_and_never_an_approval(signoff_server, client):
    asked = client.request("deploy.web", unique_title(), params={"v": 2})
    signoff_server.deny(asked.id, "bob", "no")
    receipt = client.receipt(asked.id)
    keys = client.receipt_keys()
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, "deploy.web", {"v": 2}, keys)
    assert refused.value.code == "wrong_status"
    signed = verify_receipt(receipt, "deploy.web", {"v": 2}, keys, require_status="denied")
    assert signed["deciders"] == ["bob"]


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 that records every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((body, dict(self.headers.items())))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/signoff"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def test_the_final_state_arrives_as_a_signed_webhook_that_verifies(signoff_server, client):
    receiver = Receiver()
    try:
        params = {"service": "web", "version": "1.5"}
        asked = client.request(
            "deploy.web", unique_title(), params=params, callback_url=receiver.url
        )
        signoff_server.approve(asked.id)
        deadline = time.monotonic() + 30
        while not receiver.deliveries:
            assert time.monotonic() < deadline, "no webhook delivery"
            time.sleep(0.05)
    finally:
        receiver.close()
    body, headers = receiver.deliveries[0]
    event = verify_webhook(body, headers, signoff_server.webhook_secret)
    assert event["type"] == "approval.final"
    assert event["approval"]["id"] == asked.id
    assert event["approval"]["status"] == "approved"
    # The webhook's receipt proves the same as the receipt endpoint.
    keys = client.receipt_keys()
    assert verify_receipt(event["receipt"], "deploy.web", params, keys, request_id=asked.id)
    with pytest.raises(WebhookError, match="signature"):
        verify_webhook(body, headers, "whsec_" + "x" * 43)
