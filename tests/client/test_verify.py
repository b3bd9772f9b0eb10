"""verify_receipt and verify_webhook against material signed here, per the wire spec; and
which failures the client retries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signoff_client import (
    ApiError,
    NetworkError,
    ReceiptError,
    RetryPolicy,
    SignoffError,
    WebhookError,
    verify_receipt,
    verify_webhook,
)
from tests.client.signing import SigningKey, b64url, receipt_body, signed_delivery

ACTION = "db.drop_table"
PARAMS = {"table": "users", "database": "prod"}
SECRET = "whsec_" + "a" * 43


@pytest.fixture
def key() -> SigningKey:
    return SigningKey()


def keys_json(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.entry(active=index == 0) for index, k in enumerate(keys)]}


def test_a_good_receipt_verifies_and_returns_its_signed_content(key):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    signed = verify_receipt(receipt, ACTION, PARAMS, keys_json(key), request_id="req1")
    assert signed == receipt["receipt"]
    assert signed["status"] == "approved"


def test_key_order_in_params_does_not_matter(key):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    reordered = {"database": "prod", "table": "users"}
    assert verify_receipt(receipt, ACTION, reordered, keys_json(key))["id"] == "req1"


@pytest.mark.parametrize(
    ("action", "params"),
    [
        (ACTION, {"table": "orders", "database": "prod"}),
        (ACTION, {"table": "users"}),
        (ACTION, {**PARAMS, "cascade": True}),
        ("db.truncate", PARAMS),
    ],
)
def test_a_changed_payload_is_refused(key, action, params):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, action, params, keys_json(key), request_id="req1")
    assert refused.value.code == "payload_mismatch"


def test_another_requests_receipt_is_refused(key):
    receipt_of_a = key.sign_receipt(receipt_body("request-a", ACTION, PARAMS))
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt_of_a, ACTION, PARAMS, keys_json(key), request_id="request-b")
    assert refused.value.code == "wrong_request"


def test_an_expired_receipt_is_refused(key):
    decided = datetime(2026, 11, 26, 22, 0, 0, tzinfo=UTC)
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS, decided_at=decided))
    just_valid = decided + timedelta(hours=1)
    assert verify_receipt(receipt, ACTION, PARAMS, keys_json(key), now=just_valid)
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(
            receipt, ACTION, PARAMS, keys_json(key), now=just_valid + timedelta(seconds=1)
        )
    assert refused.value.code == "expired"


def test_an_unknown_key_is_refused(key):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, ACTION, PARAMS, keys_json(SigningKey()))
    assert refused.value.code == "unknown_key"


def test_a_receipt_claiming_a_known_key_id_but_signed_by_another_key_is_refused(key):
    forger = SigningKey()
    receipt = forger.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    receipt["key_id"] = key.key_id
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, ACTION, PARAMS, keys_json(key))
    assert refused.value.code == "bad_signature"


def test_a_changed_signed_field_breaks_the_signature(key):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS, status="denied"))
    receipt["receipt"]["status"] = "approved"
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, ACTION, PARAMS, keys_json(key))
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("signature", ["", "not base64!", b64url(b"\x00" * 64), "AAAA===="])
def test_a_bad_signature_is_refused(key, signature):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    receipt["signature"] = signature
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, ACTION, PARAMS, keys_json(key))
    assert refused.value.code == "bad_signature"


def test_a_receipt_signed_by_a_rotated_out_key_still_verifies_while_listed(key):
    old_receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    new_key = SigningKey()
    after_rotation = keys_json(new_key, key)  # the new key signs; the old one stays listed
    assert verify_receipt(old_receipt, ACTION, PARAMS, after_rotation)
    new_receipt = new_key.sign_receipt(receipt_body("req2", ACTION, PARAMS))
    assert verify_receipt(new_receipt, ACTION, PARAMS, after_rotation)
    with pytest.raises(ReceiptError, match="unknown key"):
        verify_receipt(old_receipt, ACTION, PARAMS, keys_json(new_key))  # once removed


def test_keys_may_be_a_list_or_a_mapping_of_raw_bytes(key):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    assert verify_receipt(receipt, ACTION, PARAMS, [key.entry()])
    assert verify_receipt(receipt, ACTION, PARAMS, {key.key_id: key.public_bytes})


def test_a_key_entry_whose_id_is_not_its_keys_id_is_refused(key):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS))
    entry = key.entry() | {"public_key": SigningKey().entry()["public_key"]}
    with pytest.raises(ReceiptError, match="not the id of its public key"):
        verify_receipt(receipt, ACTION, PARAMS, {"keys": [entry]})


@pytest.mark.parametrize("status", ["denied", "expired", "cancelled"])
def test_a_receipt_of_a_request_that_was_not_approved_is_refused(key, status):
    receipt = key.sign_receipt(receipt_body("req1", ACTION, PARAMS, status=status, deciders=[]))
    with pytest.raises(ReceiptError) as refused:
        verify_receipt(receipt, ACTION, PARAMS, keys_json(key))
    assert refused.value.code == "wrong_status"
    signed = verify_receipt(receipt, ACTION, PARAMS, keys_json(key), require_status=status)
    assert signed["status"] == status


@pytest.mark.parametrize(
    "receipt",
    [{}, {"receipt": "x"}, {"receipt": {}, "alg": "RS256", "key_id": "k", "signature": "s"}],
)
def test_malformed_receipts_are_refused(key, receipt):
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, ACTION, PARAMS, keys_json(key))


# -- webhooks ---------------------------------------------------------------------------------

EVENT = {
    "event_id": "evt_1",
    "type": "approval.final",
    "approval": {"id": "req1", "status": "approved"},
    "receipt": {},
}


def test_a_genuine_fresh_delivery_verifies():
    now = int(time.time())
    body, headers = signed_delivery(EVENT, SECRET, now)
    assert verify_webhook(body, headers, SECRET) == EVENT


def test_header_names_are_case_insensitive():
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert verify_webhook(body, lowered, SECRET, now=1_800_000_000)["event_id"] == "evt_1"


def test_any_of_several_signatures_may_match_during_a_secret_rotation():
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    _, old = signed_delivery(EVENT, "whsec_" + "b" * 43, 1_800_000_000)
    headers["Signoff-Signature"] = f"{old['Signoff-Signature']}, {headers['Signoff-Signature']}"
    assert verify_webhook(body, headers, SECRET, now=1_800_000_000)


def test_a_forged_signature_fails():
    body, headers = signed_delivery(EVENT, "whsec_" + "f" * 43, 1_800_000_000)
    with pytest.raises(WebhookError, match="signature does not match"):
        verify_webhook(body, headers, SECRET, now=1_800_000_000)


def test_a_changed_body_fails():
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    tampered = body.replace(b'"approved"', b'"denied"')
    assert tampered != body
    with pytest.raises(WebhookError, match="signature does not match"):
        verify_webhook(tampered, headers, SECRET, now=1_800_000_000)


def test_a_signature_over_another_timestamp_fails():
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    headers["Signoff-Timestamp"] = "1800000001"
    with pytest.raises(WebhookError, match="signature does not match"):
        verify_webhook(body, headers, SECRET, now=1_800_000_000)


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_a_stale_or_future_timestamp_fails(offset):
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    with pytest.raises(WebhookError, match="timestamp"):
        verify_webhook(body, headers, SECRET, now=1_800_000_000 + offset)
    # Within the tolerance the same delivery is fine.
    assert verify_webhook(
        body, headers, SECRET, now=1_800_000_000 + offset, tolerance_seconds=90_000
    )


@pytest.mark.parametrize("missing", ["Signoff-Signature", "Signoff-Timestamp"])
def test_a_missing_header_fails(missing):
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    del headers[missing]
    with pytest.raises(WebhookError, match=missing):
        verify_webhook(body, headers, SECRET, now=1_800_000_000)


def test_a_non_v1_signature_is_ignored():
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    headers["Signoff-Signature"] = headers["Signoff-Signature"].replace("v1=", "v0=")
    with pytest.raises(WebhookError, match="signature does not match"):
        verify_webhook(body, headers, SECRET, now=1_800_000_000)


def test_an_event_id_header_that_differs_from_the_signed_one_fails():
    body, headers = signed_delivery(EVENT, SECRET, 1_800_000_000)
    headers["Signoff-Event-Id"] = "evt_other"
    with pytest.raises(WebhookError, match="event id"):
        verify_webhook(body, headers, SECRET, now=1_800_000_000)


# -- what is retried --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NetworkError("refused"), 0.5),
        (NetworkError("bad scheme", retryable=False), None),
        (ApiError(503, "busy", "busy"), 0.5),
        (ApiError(429, "rate_limited", "slow down", retry_after=7), 7),
        (ApiError(429, "rate_limited", "slow down", retry_after=600), 60),
        (ApiError(502, "http_error", "bad gateway"), 0.5),
        (ApiError(404, "not_found", "no"), None),
        (ApiError(409, "already_decided", "no"), None),
        (SignoffError("not signoff"), None),
    ],
)
def test_which_failures_are_retried_and_after_how_long(error, expected):
    policy = RetryPolicy(delays=(0.5, 1.0), jitter=0)
    assert policy.delay_after(error, 0) == expected


def test_retries_stop_after_the_last_delay():
    policy = RetryPolicy(delays=(0.5, 1.0), jitter=0)
    busy = ApiError(503, "busy", "busy")
    assert [policy.delay_after(busy, n) for n in range(3)] == [0.5, 1.0, None]


def test_jitter_only_lengthens_a_delay_a_little():
    policy = RetryPolicy(delays=(2.0,), jitter=0.1)
    delays = {policy.delay_after(NetworkError("x"), 0) for _ in range(50)}
    assert all(delay is not None and 2.0 <= delay <= 2.2 for delay in delays)
