"""B12: four-eyes by identity, not spelling.

``requested_by`` is text an agent writes. Spelled differently (case, surrounding space,
zero-width characters, compatibility forms) it still names the person, who may not decide;
written with look-alike letters (Cyrillic, a zero for an O) it is ambiguous, and every person
it looks like may not decide either, and the card says why. Another approver still can.
"""

from __future__ import annotations

import pytest

from approvals.machine import Status
from tests.reliability.app_world import app_world
from tests.web.conftest import csrf_token_in

SPELLINGS_OF_P01 = [
    ("upper case", "P01"),
    ("trailing space", "p01 "),
    ("leading tab", "\tp01"),
    ("zero-width space", "p01\u200b"),
    ("zero-width joiner inside", "p\u200d01"),
    ("bidi override", "\u202ep01"),
    ("fullwidth", "\uff50\uff10\uff11"),
    ("soft hyphen", "p\u00ad01"),
]
LOOKALIKES_OF_P01 = [
    ("Cyrillic er", "\u044001"),
    ("Greek rho", "\u03c101"),
    ("letter O for zero", "pO1"),
    ("letter l for one", "p0l"),
]


async def _vote(world, person: str, request_id: str):
    client = await world.signed_in(person)
    page = await client.get(f"/requests/{request_id}")
    assert page.status_code == 200, page.text
    csrf = csrf_token_in(page.text)
    return page, await client.post(f"/requests/{request_id}/approve", data={"csrf_token": csrf})


@pytest.mark.parametrize(
    "requested_by", [s for _, s in SPELLINGS_OF_P01], ids=[i for i, _ in SPELLINGS_OF_P01]
)
async def test_B12_another_spelling_of_the_requester_may_not_decide(tmp_path, requested_by):
    async with app_world(tmp_path) as world:
        request_id = await world.created(title="for p01", requested_by=requested_by)
        page, refused = await _vote(world, "p01", request_id)
        assert "made on your behalf" in page.text  # said before the click
        assert refused.status_code == 403, refused.text
        assert "made on your behalf" in refused.text
        request = await world.get(request_id)
        assert (request.status, request.votes) == (Status.PENDING, ())
        _page, counted = await _vote(world, "p02", request_id)
        assert counted.status_code == 303
        assert (await world.get(request_id)).status is Status.APPROVED
        await world.check()


@pytest.mark.parametrize(
    "requested_by", [s for _, s in LOOKALIKES_OF_P01], ids=[i for i, _ in LOOKALIKES_OF_P01]
)
async def test_B12_a_lookalike_of_an_approver_fails_closed_and_the_card_says_so(
    tmp_path, requested_by
):
    async with app_world(tmp_path) as world:
        request_id = await world.created(title="for someone like p01", requested_by=requested_by)
        card = await world.runtime.service.card(request_id)
        assert card is not None
        assert card.note is not None
        assert "which looks like p01: p01 may not decide it" in card.note
        page, refused = await _vote(world, "p01", request_id)
        assert "looks like p01" in page.text  # on the inbox page too
        assert refused.status_code == 403, refused.text
        assert "looks like p01, so someone else must decide it" in refused.text
        assert (await world.get(request_id)).votes == ()
        _page, counted = await _vote(world, "p02", request_id)
        assert counted.status_code == 303
        await world.check()


async def test_B12_a_name_like_nobody_blocks_nobody(tmp_path):
    async with app_world(tmp_path) as world:
        request_id = await world.created(title="for a customer", requested_by="customer-4711")
        card = await world.runtime.service.card(request_id)
        assert card is not None
        assert card.note is None
        _page, counted = await _vote(world, "p01", request_id)
        assert counted.status_code == 303
        await world.check()
