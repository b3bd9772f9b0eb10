"""B7: receipt misuse, refused by the verifier an executor runs before it acts.

Receipts come from the real application (``GET /v1/approvals/{id}/receipt``, keys from
``GET /v1/receipt-keys``) for requests decided there; ``signoff_client.verify_receipt``
must refuse each misuse of ``corpus/receipts.yaml`` with its code, and accept the control.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from approvals.model import Verdict, VoteCommand
from approvals.outcomes import Applied
from signoff_client import ReceiptError, verify_receipt
from tests.reliability.app_world import APPROVERS, AppWorld, app_world
from tests.reliability.corpus import cases

ACTION = "db.drop_table"
PARAMS = {"table": "users", "database": "prod"}


async def decided(
    world: AppWorld, verdict: Verdict, **changes: Any
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A ``db.*`` request (quorum 3) decided in the app, with its receipt and the keys.

    Approvers vote in turn until the request is final (one deny decides)."""
    params = {**PARAMS, **changes}
    request_id = await world.created(action=ACTION, title="Drop users", params=params)
    for person in APPROVERS[:3]:
        outcome = await world.runtime.service.vote(
            VoteCommand(request_id, "web", person.name, verdict)
        )
        assert isinstance(outcome, Applied)
        if outcome.request.status.is_final:
            break
    receipt = await world.client.get(f"/v1/approvals/{request_id}/receipt", headers=world.auth())
    assert receipt.status_code == 200, receipt.text
    keys = (await world.client.get("/v1/receipt-keys", headers=world.auth())).json()
    return request_id, receipt.json(), keys


@pytest.fixture
async def worlds(tmp_path: Path) -> Any:
    """The application, and a second one with receipt keys of its own."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with app_world(tmp_path / "a") as world, app_world(tmp_path / "b") as other:
        yield world, other


@pytest.mark.parametrize("entry", cases("receipts.yaml", "misuse"))
async def test_B7_the_verifier_refuses_every_receipt_misuse(worlds, entry):
    world, other = worlds
    request_id, receipt, keys = await decided(world, Verdict.APPROVE)
    params: dict[str, Any] = dict(PARAMS)
    action, for_request = ACTION, request_id
    now = datetime.now(UTC)
    misuse = entry["misuse"]
    if misuse == "params_changed":
        params["table"] = "orders"
    elif misuse == "params_extended":
        params["cascade"] = True
    elif misuse == "action_changed":
        action = "db.truncate"
    elif misuse == "other_request":
        # Request B has the very same payload; A's receipt must still not authorize it.
        other_id = await world.created(action=ACTION, title="Drop users again", params=PARAMS)
        for_request = other_id
    elif misuse == "expired":
        expires = datetime.strptime(receipt["receipt"]["expires"], "%Y-%m-%dT%H:%M:%SZ")
        now = expires.replace(tzinfo=UTC) + timedelta(seconds=1)
    elif misuse == "other_keys":
        _id, _receipt, keys = await decided(other, Verdict.APPROVE)
    elif misuse == "borrowed_key_id":
        _id, foreign, _keys = await decided(other, Verdict.APPROVE)
        receipt = copy.deepcopy(foreign)
        receipt["receipt"]["id"] = request_id
        receipt["key_id"] = keys["keys"][0]["key_id"]
    elif misuse == "status_edited":
        _denied_id, denied, _keys = await decided(world, Verdict.DENY, table="orders")
        receipt = copy.deepcopy(denied)
        receipt["receipt"]["status"] = "approved"
        params["table"], for_request = "orders", _denied_id
    elif misuse == "denied":
        for_request, receipt, _keys = await decided(world, Verdict.DENY, table="orders")
        params["table"] = "orders"
    elif misuse == "signature":
        receipt["signature"] = entry["value"]
    elif misuse == "algorithm":
        receipt["alg"] = entry["value"]

    if entry["expect"] == "valid":
        signed = verify_receipt(receipt, action, params, keys, request_id=for_request, now=now)
        assert signed["id"] == request_id
        assert signed["status"] == "approved"
        assert signed["deciders"] == [person.name for person in APPROVERS[:3]]
    else:
        with pytest.raises(ReceiptError) as refused:
            verify_receipt(receipt, action, params, keys, request_id=for_request, now=now)
        assert refused.value.code == entry["expect"], refused.value.reason
    await world.check()
