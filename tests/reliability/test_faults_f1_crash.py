"""F1: ``kill -9`` of the real ``signoff serve`` at each risky point, then a clean restart.

Each test arms one crash point (:mod:`approvals.crashpoints`), drives the process there
through its public doors (the agent API, Slack clicks, the clock), waits for it to die by
SIGKILL, restarts it without the variable, lets it recover, and ends with the invariant
check. Pass: every request reaches its right final state, no decision is lost or doubled,
and a crash between a post and the storing of its reference costs at most one duplicate
card. Every point runs :data:`REPEATS` times, the runs of one point side by side (each with
its own process, database and fake Slack): starting ``signoff serve`` costs about two
seconds of CPU, and sixty starts one after another would take most of the suite's time on
a two-core machine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from approvals.crashpoints import CrashPoint
from approvals.machine import Status
from tests.reliability.crash import (
    ALICE,
    ESCALATED,
    OPS,
    CrashWorld,
    crash_world,
)
from tests.waiting import wait_for

REPEATS = 5
"""How often each crash point is run (RELIABILITY.md asks for at least five)."""

pytestmark = pytest.mark.slow

Scenario = Callable[[CrashWorld], Awaitable[dict[str, float]]]


async def run_repeatedly(
    name: str, scenario: Scenario, tmp_path: Path, template: tuple[Path, str]
) -> list[dict[str, float]]:
    """Run ``scenario`` :data:`REPEATS` times side by side; fail if any run failed."""

    async def run(index: int) -> dict[str, float]:
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        async with crash_world(folder, *template) as world:
            started = time.monotonic()
            figures = await scenario(world)
            figures["seconds"] = time.monotonic() - started
            return figures

    results = await asyncio.gather(*(run(n) for n in range(REPEATS)), return_exceptions=True)
    failed = [(n, r) for n, r in enumerate(results) if isinstance(r, BaseException)]
    if failed:
        _first, error = failed[0]
        runs = ", ".join(str(n) for n, _ in failed)
        raise AssertionError(f"F1 {name}: runs {runs} of {REPEATS} failed") from error
    figures = [r for r in results if isinstance(r, dict)]
    summary = {key: [round(f[key], 2) for f in figures] for key in figures[0]}
    print(f"F1 {name}: {REPEATS} runs, {summary}")
    return figures


async def _create(world: CrashWorld, action: str, key: str, **body) -> str | None:
    """Create a request; its id, or ``None`` when the process died before answering."""
    try:
        response = await world.create(action, idempotency_key=key, **body)
    except httpx.TransportError:
        return None
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _after_restart(world: CrashWorld, action: str, key: str, known: str | None, **body):
    """The agent's retry with the same Idempotency-Key finds the one request made."""
    retried = await world.create(action, idempotency_key=key, **body)
    assert retried.status_code == 200, retried.text  # a replay: nothing new was created
    request_id = str(retried.json()["id"])
    assert known in (None, request_id)
    async with world.store.read() as reader:
        assert [r.id for r in await reader.list_requests(limit=10)] == [request_id]
    return request_id


async def _approve_and_settle(world: CrashWorld, request_id: str, channel: str = OPS) -> None:
    card = await world.card(request_id, channel)
    ack = await world.click(card, user=ALICE)
    assert ack is not None
    assert ack["status"] == 200
    await world.until_status(request_id, Status.APPROVED)
    await world.until_settled()


async def _restarted(world: CrashWorld) -> float:
    """Restart clean; returns the moment the process answered ready (monotonic)."""
    await world.start_ready()
    return time.monotonic()


async def after_create_commit(world: CrashWorld) -> dict[str, float]:
    point = CrashPoint.AFTER_CREATE_COMMIT
    key = f"create-{uuid.uuid4()}"
    await world.start_ready(crash_at=point)
    assert await _create(world, "deploy.web", key) is None
    await world.until_killed(point)

    ready = await _restarted(world)
    request_id = await _after_restart(world, "deploy.web", key, None)
    await _approve_and_settle(world, request_id)
    assert len(world.fake.posts_in(OPS)) == 1
    report = await world.check(accepted=[request_id])
    assert (report.final, report.votes, report.cards_checked) == (1, 1, 1)
    return {"recovered_after": time.monotonic() - ready}


async def test_F1_after_create_commit_the_retried_create_finds_the_one_request(
    tmp_path, crash_template
):
    """F1 after create commit: the agent got no answer; its retry gets the request made."""
    await run_repeatedly("after create commit", after_create_commit, tmp_path, crash_template)


async def after_send_before_ref(world: CrashWorld) -> dict[str, float]:
    point = CrashPoint.AFTER_SEND_BEFORE_REF
    key = f"send-{uuid.uuid4()}"
    await world.start_ready(crash_at=point)
    known = await _create(world, "deploy.web", key)
    await world.until_killed(point)
    assert len(world.fake.posts_in(OPS)) == 1  # the card reached Slack before the kill

    ready = await _restarted(world)
    request_id = await _after_restart(world, "deploy.web", key, known)
    await world.card(request_id)
    card_again = time.monotonic() - ready
    await _approve_and_settle(world, request_id)
    posts = world.fake.posts_in(OPS)
    assert len(posts) <= 2, [post.text for post in posts]
    report = await world.check(accepted=[request_id])
    assert (report.final, report.votes, report.cards_checked) == (1, 1, 1)
    return {"duplicate_cards": len(posts) - 1, "card_stored_after": card_again}


async def test_F1_after_a_send_before_its_ref_is_stored_costs_at_most_one_duplicate(
    tmp_path, crash_template
):
    """F1 after a send, before its message ref is stored: posted again at most once."""
    figures = await run_repeatedly(
        "after a send, before its ref is stored", after_send_before_ref, tmp_path, crash_template
    )
    assert all(f["duplicate_cards"] <= 1 for f in figures)


async def during_decision(world: CrashWorld) -> dict[str, float]:
    point = CrashPoint.DURING_DECISION
    await world.start_ready(crash_at=point)
    known = await _create(world, "deploy.web", f"decide-{uuid.uuid4()}")
    assert known is not None
    card = await world.card(known)
    await world.click(card, user=ALICE)
    await world.until_killed(point)
    before = await world.request(known)
    assert (before.status, before.votes) == (Status.PENDING, ())

    ready = await _restarted(world)
    await _approve_and_settle(world, known)
    after = await world.request(known)
    assert [vote.person for vote in after.votes] == ["alice"]
    report = await world.check(accepted=[known])
    assert (report.final, report.votes, report.cards_checked) == (1, 1, 1)
    return {"recovered_after": time.monotonic() - ready}


async def test_F1_during_a_decision_the_uncommitted_vote_is_gone_and_a_new_click_counts(
    tmp_path, crash_template
):
    """F1 during a decision: the vote's transaction dies; clicking again decides once."""
    await run_repeatedly("during a decision", during_decision, tmp_path, crash_template)


async def after_decision_before_edit(world: CrashWorld) -> dict[str, float]:
    point = CrashPoint.AFTER_DECISION_BEFORE_EDIT
    await world.start_ready(crash_at=point)
    known = await _create(world, "deploy.web", f"edit-{uuid.uuid4()}")
    assert known is not None
    card = await world.card(known)
    await world.click(card, user=ALICE)
    await world.until_killed(point)
    assert (await world.request(known)).status is Status.APPROVED
    assert card.buttons, "the card was edited before the crash"

    ready = await _restarted(world)
    await world.until_settled()
    edited_after = time.monotonic() - ready
    assert not card.buttons
    heard = await world.agent.get(f"/v1/approvals/{known}", params={"wait": 5})
    assert heard.json()["status"] == "approved"
    assert heard.json()["decision"]["by"] == "alice"
    report = await world.check(accepted=[known])
    assert (report.final, report.votes, report.cards_checked) == (1, 1, 1)
    return {"card_edited_after": edited_after}


async def test_F1_after_a_decision_before_the_card_edit_the_restart_edits_the_card(
    tmp_path, crash_template
):
    """F1 after a decision, before the card edit: the decision stands, the card follows."""
    await run_repeatedly(
        "after a decision, before the card edit",
        after_decision_before_edit,
        tmp_path,
        crash_template,
    )


async def during_sweep(world: CrashWorld) -> dict[str, float]:
    point = CrashPoint.DURING_SWEEP
    await world.start_ready(crash_at=point)
    known = await _create(world, "deploy.web", f"sweep-{uuid.uuid4()}", timeout_seconds=1)
    assert known is not None
    card = await world.card(known)
    await world.until_killed(point)
    assert (await world.request(known)).status is Status.PENDING

    ready = await _restarted(world)
    await world.until_status(known, Status.DENIED)
    timed_out_after = time.monotonic() - ready
    await world.until_settled()
    late = await world.click(card, user=ALICE)
    assert late is not None
    assert late["status"] == 200

    async def told() -> bool:
        return any("denied" in e.text for e in world.fake.ephemerals_for(ALICE))

    await wait_for(told)
    final = await world.request(known)
    assert final.decision is not None
    assert (final.decision.by, final.votes) == ("timeout", ())
    report = await world.check(accepted=[known])
    assert (report.final, report.votes, report.cards_checked) == (1, 0, 1)
    return {"timed_out_after": timed_out_after}


async def test_F1_during_a_sweep_the_restart_times_out_once_and_refuses_late_clicks(
    tmp_path, crash_template
):
    """F1 during a sweep: the timeout is applied once after the restart; late clicks told."""
    await run_repeatedly("during a sweep", during_sweep, tmp_path, crash_template)


async def during_escalation(world: CrashWorld) -> dict[str, float]:
    point = CrashPoint.DURING_ESCALATION
    await world.start_ready(crash_at=point)
    known = await _create(world, "esc.deploy", f"escalate-{uuid.uuid4()}")
    assert known is not None
    await world.card(known, OPS)
    await world.until_killed(point)
    assert (await world.request(known)).level == 0

    ready = await _restarted(world)
    await world.card(known, ESCALATED)
    escalated_after = time.monotonic() - ready
    await _approve_and_settle(world, known, ESCALATED)
    final = await world.request(known)
    assert final.level == 1
    assert len(world.fake.posts_in(ESCALATED)) == 1
    report = await world.check(accepted=[known])
    assert (report.final, report.votes, report.cards_checked) == (1, 1, 2)
    return {"escalated_card_after": escalated_after}


async def test_F1_during_an_escalation_the_restart_escalates_once(tmp_path, crash_template):
    """F1 during an escalation: level 2 is reached exactly once, and decides."""
    await run_repeatedly("during an escalation", during_escalation, tmp_path, crash_template)
