"""F9: the config file is broken, then an approver is taken out, while a request is pending.

The real ``signoff serve`` (with the fake Slack) watches its config file. An edit that is
not valid YAML is refused whole: the old config keeps serving, and the error is logged and
audited with file and line. A valid edit that takes bob out of the approvers is applied at
once; bob's later click on the card of the request made before it is refused (and audited),
and alice's decides.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from approvals.machine import Status
from tests.reliability.crash import ALICE, BOB, crash_world
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

DEFAULT_LEVELS = "    levels: [{approvers: [alice, bob], notify: [ops], timeout: 30m}]\n"
WITHOUT_BOB = "    levels: [{approvers: [alice], notify: [ops], timeout: 30m}]\n"
BROKEN_TAIL = "  - {name: half-written, levels: [{approvers: [alice]\n"
"""A policy cut off mid-line, as an editor saving a half-typed change would leave it."""


async def test_F9_broken_yaml_keeps_the_old_config_and_a_removed_approver_is_refused(
    tmp_path, crash_template
):
    """F9: invalid YAML is refused with file:line (logged, audited); bob, taken out while a
    request was pending, can no longer decide it; alice still can."""
    async with crash_world(tmp_path, *crash_template) as world:
        await world.start_ready()
        created = await world.create("deploy.web", idempotency_key=str(uuid.uuid4()))
        assert created.status_code == 201
        request_id = created.json()["id"]
        card = await world.card(request_id)

        original = world.config_text()
        assert DEFAULT_LEVELS in original
        broken_line = original.count("\n") + 1
        world.config.write_text(original + BROKEN_TAIL, encoding="utf-8")

        async def rejected() -> dict[str, Any] | None:
            entries = await _config_entries(world)
            return entries[-1] if entries[-1]["kind"] == "config_rejected" else None

        rejection = await wait_for(rejected, within=20)
        [problem] = rejection["problems"]
        assert problem.startswith(f"{world.config}:"), problem
        assert "invalid YAML" in problem
        assert f"line {broken_line}" in problem  # where the cut-off mapping starts
        assert problem in world.log.read_text(errors="replace")
        readiness = (await world.agent.get("/readyz")).json()
        assert readiness["details"]["config"]["status"] == "rejected"
        # The old config still serves: a new request gets the old default policy.
        still = await world.create("deploy.api")
        assert still.status_code == 201
        assert still.json()["policy"] == "default"

        world.config.write_text(original.replace(DEFAULT_LEVELS, WITHOUT_BOB), encoding="utf-8")

        async def reloaded() -> bool:
            return (await _config_entries(world))[-1]["kind"] == "config_loaded"

        await wait_for(reloaded, within=20)
        ack = await world.click(card, user=BOB)
        assert ack is not None
        assert ack["status"] == 200

        async def bob_told() -> str | None:
            notices = [e.text for e in world.fake.ephemerals_for(BOB)]
            return notices[-1] if notices else None

        notice = await wait_for(bob_told)
        assert "not counted" in notice
        assert "no longer an approver" in notice
        assert (await world.request(request_id)).votes == ()
        async with world.store.read() as reader:
            refusals = [
                json.loads(e.data)
                for e in await reader.audit_entries(request_id=request_id)
                if e.kind == "refused"
            ]
        assert [r["code"] for r in refusals] == ["not_an_approver"]

        await world.click(card, user=ALICE)
        await world.until_status(request_id, Status.APPROVED)
        later = still.json()["id"]
        await world.click(await world.card(later), user=ALICE)
        await world.until_status(later, Status.APPROVED)
        await world.until_settled()
        report = await world.check(accepted=[request_id, later])
        assert (report.final, report.votes) == (2, 2)
        print(f"F9: refused {rejection['problems'][0]!r}; bob was told {notice!r}")


async def _config_entries(world) -> list[dict[str, Any]]:
    async with world.store.read() as reader:
        entries = await reader.audit_entries()
    return [
        {"kind": e.kind, **json.loads(e.data)}
        for e in entries
        if e.kind in ("config_loaded", "config_rejected")
    ]
