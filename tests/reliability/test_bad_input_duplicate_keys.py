"""B18: a JSON body with a key given twice, at any depth, is refused with 400 naming the key.

Sent with a valid agent key to the whole application: nothing is created, the answer is
``{"error": {"code": "duplicate_key", "message"}}`` and the message names the key. The same
body without the repeat is accepted.
"""

from __future__ import annotations

import pytest

from tests.reliability.app_world import app_world

DUPLICATED = [
    ("top-level", '{"action": "deploy.web", "action": "db.drop", "title": "t"}', "action"),
    (
        "nested",
        '{"action": "deploy.web", "title": "t", "params": {"db": {"name": "a", "name": "b"}}}',
        "name",
    ),
    (
        "in a list",
        '{"action": "deploy.web", "title": "t", '
        '"params": {"rows": [{"id": 1}, {"id": 1, "id": 2}]}}',
        "id",
    ),
    ("same value twice", '{"action": "deploy.web", "title": "t", "title": "t"}', "title"),
    ("escaped spelling", '{"action": "deploy.web", "title": "t", "ti\\u0074le": "u"}', "title"),
]


@pytest.mark.parametrize(
    ("body", "key"), [(b, k) for _, b, k in DUPLICATED], ids=[i for i, *_ in DUPLICATED]
)
async def test_B18_a_duplicate_key_is_refused_naming_it(tmp_path, body, key):
    async with app_world(tmp_path) as world:
        existing = await world.created(title="before")
        headers = {**world.auth(), "Content-Type": "application/json"}
        response = await world.client.post("/v1/approvals", content=body, headers=headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "duplicate_key"
        assert repr(key) in error["message"]
        cancel = await world.client.post(
            f"/v1/approvals/{existing}/cancel",
            content=b'{"reason": "a", "reason": "b"}',
            headers=headers,
        )
        assert cancel.status_code == 400, cancel.text
        assert "'reason'" in cancel.json()["error"]["message"]
        listed = await world.client.get("/v1/approvals?limit=500", headers=world.auth())
        assert [item["id"] for item in listed.json()["approvals"]] == [existing]
        assert (await world.get(existing)).status.value == "pending"
        await world.check()


async def test_B18_the_same_body_without_the_repeat_is_accepted(tmp_path):
    async with app_world(tmp_path) as world:
        body = (
            '{"action": "deploy.web", "title": "t", '
            '"params": {"db": {"name": "a"}, "rows": [{"id": 1}, {"id": 2}], "name": "top"}}'
        )
        response = await world.client.post(
            "/v1/approvals",
            content=body,
            headers={**world.auth(), "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        world.accepted.append(response.json()["id"])
        assert response.json()["params"]["db"] == {"name": "a"}
        await world.check()
