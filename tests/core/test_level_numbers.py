"""Escalation levels are numbered one way: from 0, as the agent API reports ``level``.

Cards and pages show the same number, with where the level stands in words."""

from __future__ import annotations

import pytest

from approvals.card import build_card, level_label
from approvals.model import CreateCommand, public_json


@pytest.mark.parametrize(
    ("level", "levels", "shown"),
    [
        (0, 1, "0 (the only level)"),
        (0, 2, "0 (first of 2)"),
        (1, 2, "1 (last of 2)"),
        (1, 3, "1 (second of 3)"),
        (2, 3, "2 (last of 3)"),
        (9, 12, "9 (of 0-11)"),
    ],
)
def test_a_level_is_shown_by_its_api_number_and_its_place(level, levels, shown):
    assert level_label(level, levels) == shown


async def test_the_card_shows_the_level_the_api_reports(service, clock):
    request = (
        await service.create(
            CreateCommand(agent="a", action="db.migrate", title="Migrate", params={"env": "prod"})
        )
    ).request
    assert public_json(request)["level"] == 0
    assert build_card(request).level_text == "0 (first of 2)"

    clock.advance(request.level_starts()[1] - clock.now())
    await service.process_due()
    escalated = await service.get(request.id)
    assert escalated is not None
    assert public_json(escalated)["level"] == 1
    assert build_card(escalated).level_text == "1 (last of 2)"
