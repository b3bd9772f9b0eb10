"""B10: malformed input to the agent API gets a 4xx with a JSON error, never a 5xx.

Every entry of ``corpus/api_bodies.yaml`` (malformed JSON, wrong types, huge bodies, deep
nesting, unknown fields, bad ids and query values) is sent with a valid agent key to the
whole application; the answer must be the entry's status with ``{"error": {"code",
"message"}}``, and nothing may be created. The schema-driven fuzzing is in
test_bad_input_openapi_fuzz.py.
"""

from __future__ import annotations

from typing import Any

from tests.reliability.app_world import app_world
from tests.reliability.corpus import entries

REQUESTS = entries("api_bodies.yaml", "requests")


def content_of(entry: dict[str, Any]) -> bytes | None:
    """The raw body an entry describes (``None`` when it is sent as JSON or not at all)."""
    if "body_hex" in entry:
        return bytes.fromhex(entry["body_hex"])
    if "body" not in entry:
        return None
    body = str(entry["body"])
    if "then_digits" in entry:
        body += "9" * int(entry["then_digits"]) + "}}"
    if "nest_objects" in entry:
        depth = int(entry["nest_objects"])
        body += '{"a": ' * depth + "1" + "}" * depth + "}"
    if "nest_lists" in entry:
        depth = int(entry["nest_lists"])
        body += "[" * depth + "]" * depth + "}}"
    if "pad" in entry:
        body += "x" * int(entry["pad"]) + '"}'
    return body.encode()


def headers_of(entry: dict[str, Any], auth: dict[str, str]) -> dict[str, str]:
    headers = {**auth, "Content-Type": entry.get("content_type", "application/json")}
    for name, value in (entry.get("headers") or {}).items():
        headers[name] = value["repeat"] * value["times"] if isinstance(value, dict) else value
    return headers


def is_json_error(response: Any) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return all(isinstance(error.get(k), str) and error[k] for k in ("code", "message"))


async def test_B10_malformed_api_input_gets_a_json_4xx_never_a_5xx(tmp_path):
    async with app_world(tmp_path) as world:
        existing = await world.created(title="the request the paths name")
        problems = []
        for entry in REQUESTS:
            response = await world.client.request(
                entry["method"],
                entry["path"].replace("{id}", existing),
                content=content_of(entry),
                json=entry.get("json") if "json" in entry else None,
                headers=headers_of(entry, world.auth()),
            )
            if response.status_code != entry["expect"]:
                problems.append(
                    f"{entry['id']}: {response.status_code}, not {entry['expect']}: "
                    f"{response.text[:200]}"
                )
                continue
            if not is_json_error(response):
                problems.append(f"{entry['id']}: not a JSON error: {response.text[:200]}")
        assert not problems, "\n".join(problems)
        listed = await world.client.get("/v1/approvals?limit=500", headers=world.auth())
        assert [item["id"] for item in listed.json()["approvals"]] == [existing]
        await world.check()
