"""B15: a state-changing inbox POST sent from another site is refused, token or not.

A page on another site can make a signed-in person's browser post to the inbox with their
cookie; the CSRF token stops a forged form that cannot read it, and this stops the rest: a
browser says where a request comes from (``Sec-Fetch-Site``, else ``Origin``), and every
POST that does not come from the inbox itself (``server.public_url``) is refused before it
is read. Each case carries a valid session and a valid CSRF token, so only the origin check
stands between it and a recorded vote.
"""

from __future__ import annotations

import pytest

from approvals.machine import Status
from tests.reliability.app_world import app_world
from tests.web.conftest import csrf_token_in

PUBLIC_ORIGIN = "http://127.0.0.1:8080"
"""The origin of the test application's ``server.public_url`` (the built-in default)."""

FOREIGN = [
    ("cross-site fetch", {"sec-fetch-site": "cross-site"}),
    ("same-site fetch (a sibling subdomain)", {"sec-fetch-site": "same-site"}),
    ("foreign Origin", {"origin": "https://evil.example"}),
    ("foreign port", {"origin": "http://127.0.0.1:9999"}),
    ("opaque Origin", {"origin": "null"}),
    (
        "cross-site beats a matching Origin",
        {"sec-fetch-site": "cross-site", "origin": PUBLIC_ORIGIN},
    ),
]
OWN = [
    ("same-origin fetch", {"sec-fetch-site": "same-origin"}),
    ("typed or bookmarked", {"sec-fetch-site": "none"}),
    ("own Origin", {"origin": PUBLIC_ORIGIN}),
    ("own Origin, upper case", {"origin": PUBLIC_ORIGIN.upper()}),
    ("no browser headers", {}),
]


@pytest.mark.parametrize("headers", [h for _, h in FOREIGN], ids=[i for i, _ in FOREIGN])
async def test_B15_a_vote_posted_from_another_site_is_refused(tmp_path, headers):
    async with app_world(tmp_path) as world:
        request_id = await world.created(title="a cross-site vote")
        alice = await world.signed_in("p01")
        page = await alice.get(f"/requests/{request_id}")
        csrf = csrf_token_in(page.text)
        for verdict in ("approve", "deny"):
            refused = await alice.post(
                f"/requests/{request_id}/{verdict}",
                data={"csrf_token": csrf, "reason": "forged"},
                headers=headers,
            )
            assert refused.status_code == 403, refused.text
            assert "sent from another site" in refused.text
        request = await world.get(request_id)
        assert (request.status, request.votes) == (Status.PENDING, ())
        # Neither sign-out nor sign-in may be done from another site either.
        logout = await alice.post("/logout", data={"csrf_token": csrf}, headers=headers)
        assert logout.status_code == 403
        assert (await alice.get("/")).status_code == 200  # still signed in
        token = await world.runtime.access.create_login_token("p02")
        login = await world.client.post("/login", data={"token": token}, headers=headers)
        assert login.status_code == 403
        used = await world.client.post("/login", data={"token": token})
        assert used.status_code == 303  # the refused attempt did not use the token up
        await world.check()


@pytest.mark.parametrize("headers", [h for _, h in OWN], ids=[i for i, _ in OWN])
async def test_B15_a_vote_from_the_inbox_itself_counts(tmp_path, headers):
    async with app_world(tmp_path) as world:
        request_id = await world.created(title="an own-site vote")
        alice = await world.signed_in("p01")
        csrf = csrf_token_in((await alice.get(f"/requests/{request_id}")).text)
        voted = await alice.post(
            f"/requests/{request_id}/approve", data={"csrf_token": csrf}, headers=headers
        )
        assert voted.status_code == 303, voted.text
        assert (await world.get(request_id)).status is Status.APPROVED
        await world.check()
