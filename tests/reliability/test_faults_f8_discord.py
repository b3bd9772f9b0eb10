"""F8 on Discord: the gateway closes, a click lands in the gap, a duplicate is replayed, and
the process restarts; every click counts once and old buttons keep working.

Built on the Discord adapter's world (real discord.py against the fake gateway and REST API).
"""

from __future__ import annotations

from datetime import timedelta

from approvals.machine import Status
from tests.adapters.discord.conftest import (  # noqa: F401 - fixtures used by name
    ALICE,
    CAROL,
    _discord_endpoints,
    discord_world,
    fake_discord,
    rules,
)
from tests.reliability.invariants import check_invariants, discord_reader, rendered_cards
from tests.waiting import wait_for


async def test_F8_discord_gateway_drops_replays_and_a_restart_lose_no_click_and_count_none_twice(
    discord_world,  # noqa: F811
):
    """F8: a click made while the gateway is closed is replayed on RESUME and decides; the
    same interaction replayed again changes nothing; after a restart (a new session), a
    button posted before it still decides."""
    world = discord_world
    first_id, first_card = await world.posted()
    second_id, second_card = await world.posted(action="deploy.api")

    world.fake.gateway_down = True
    await world.fake.drop_connections(code=4000)
    click = await world.fake.click(first_card, user=ALICE, label="Approve")
    assert world.fake.connected == 0
    world.fake.gateway_down = False

    async def resumed() -> bool:
        return world.fake.resumes >= 1 and world.fake.connected >= 1

    await wait_for(resumed)
    await wait_for(world.status_is(first_id, Status.APPROVED))
    assert [event["d"]["id"] for event in world.fake.replayed] == [click.id]

    # Delivery is at least once: the same interaction (same id) dispatched again. The
    # adapter knows its id and drops it; the clicks after it show it was handled.
    await world.fake.push(click)

    identifies = world.fake.identifies
    await world.restart_adapter()
    assert world.fake.identifies == identifies + 1
    await world.fake.click(second_card, user=CAROL, label="Approve")
    await wait_for(world.status_is(second_id, Status.APPROVED))
    await world.deliver()
    first = await world.get(first_id)
    assert len(first.votes) == 1
    on_first = [entry.kind for entry in await world.audit(first_id)]
    assert on_first.count("decided") == 1
    assert "refused" not in on_first, "the duplicate was judged again"

    cards = await rendered_cards(world.store, discord_reader(world.fake))
    report = await check_invariants(
        world.store,
        now=world.clock.now(),
        sweep_interval=timedelta(seconds=1),
        accepted=[first_id, second_id],
        cards=cards,
    )
    assert (report.final, report.votes, report.cards_checked) == (2, 2, 2)
    print(
        f"F8 Discord: {world.fake.resumes} resumes, {world.fake.identifies} identifies, "
        f"{len(world.fake.replayed)} events replayed; 2 decisions, 2 votes"
    )
