"""Email in the whole application, built from a config file.

The runtime is built from a config file's text as ``signoff serve`` builds it
(``tests.reliability.app_world``), with ``platforms.email`` pointing at a fake SMTP relay
on 127.0.0.1 (STARTTLS on a self-signed certificate, AUTH): the real aiosmtplib mails
each approver (``dm``) a card with Approve / Deny links of their own. An agent creates a
request through the API and waits on it; a person's mail client and link scanners fetch
the links (deciding nothing), the person presses the confirm page's button, the agent
hears who approved, the outcome is mailed in the card's thread, a reused link is refused,
and the run ends with the invariant checker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from approvals.machine import Status
from approvals.model import Verdict
from tests.adapters.email.conftest import PUBLIC_URL, body, links_in
from tests.fakes.smtp import FakeSmtpRelay
from tests.reliability.app_world import APPROVERS, MAIL_SENDER, OUTSIDER, AppWorld, app_world

ALICE, BOB = APPROVERS[0], APPROVERS[1]
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}
"""What a browser sends with the confirm page's own form."""
SCANNER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Microsoft Office SafeLinks"}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[AppWorld]:
    """The application with email only (and the web inbox)."""
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    try:
        async with app_world(tmp_path, email=relay) as started:
            yield started
    finally:
        await relay.stop()


def relay_of(world: AppWorld) -> FakeSmtpRelay:
    assert world.email is not None
    return world.email


async def assert_undecided(world: AppWorld, request_id: str, paths: list[str]) -> None:
    request = await world.get(request_id)
    assert (request.status, list(request.votes)) == (Status.PENDING, [])
    links = world.runtime.service.links
    for path in paths:
        claim = await links.read(path.rsplit("/", 1)[1])
        assert claim is not None
        assert not await links.spent(claim.nonce)


async def test_an_emailed_link_approves_the_agents_request_and_the_outcome_is_threaded(
    world: AppWorld,
) -> None:
    relay = relay_of(world)
    request_id = await world.created(title="Deploy web 2.4.1")

    # Every approver is mailed a card of their own, over STARTTLS and AUTH; nobody else is.
    (first,) = await world.mail(request_id, ALICE.email)
    for person in APPROVERS:
        await world.mail(request_id, person.email)
    assert world.mail_thread(request_id, OUTSIDER.email) == []
    delivered = [item for item in relay.received if ALICE.email in item.recipients]
    assert [(item.sender, item.recipients) for item in delivered] == [(MAIL_SENDER, [ALICE.email])]
    assert delivered[0].tls
    assert delivered[0].authenticated
    assert first["In-Reply-To"] is None
    assert f"Approve: {PUBLIC_URL}/confirm/{request_id}/approve/" in body(first)
    links = links_in(first)
    assert set(links) == {Verdict.APPROVE, Verdict.DENY}
    paths = [links[Verdict.APPROVE], links[Verdict.DENY]]
    assert links_in(world.mail_thread(request_id, BOB.email)[0])[Verdict.APPROVE] not in paths

    # Opening, previewing and scanning the links decides nothing and spends nothing.
    for path in paths:
        opened = await world.client.get(path)
        assert opened.status_code == 200, opened.text
        assert "Opening the link decided nothing" in opened.text
        assert ALICE.email in opened.text
        head = await world.client.head(path)
        assert head.status_code == 200
        scanned = await world.client.get(path, headers=SCANNER)
        assert scanned.status_code == 200
    await assert_undecided(world, request_id, paths)

    # The agent waits; alice presses Approve on the confirm page.
    poll = asyncio.create_task(
        world.client.get(f"/v1/approvals/{request_id}?wait=30", headers=world.auth())
    )
    pressed = await world.client.post(
        links[Verdict.APPROVE], data={"confirm": "1"}, headers=SAME_SITE
    )
    assert pressed.status_code == 200, pressed.text
    assert "You approved this request." in pressed.text
    answered = await asyncio.wait_for(poll, timeout=30)
    assert answered.status_code == 200, answered.text
    decision = {
        "verdict": "approved",
        "by": ALICE.name,
        "platform": "email",
        "reason": None,
        "grant": None,
    }
    assert answered.json()["status"] == "approved"
    assert answered.json()["decision"] == decision
    fetched = await world.client.get(f"/v1/approvals/{request_id}", headers=world.auth())
    assert (fetched.json()["status"], fetched.json()["decision"]) == ("approved", decision)

    # The outcome is mailed in the card's thread, without links, to every approver.
    thread = await world.mail(request_id, ALICE.email, count=2)
    outcome = thread[1]
    assert outcome["In-Reply-To"] == first["Message-ID"]
    assert outcome["References"] == first["Message-ID"]
    assert outcome["Subject"] == first["Subject"]
    assert body(outcome).startswith(f"Decided: Approved by {ALICE.name}")
    assert links_in(outcome) == {}
    bob_thread = await world.mail(request_id, BOB.email, count=2)
    assert bob_thread[1]["In-Reply-To"] == bob_thread[0]["Message-ID"]

    # The same link again is refused, and so is the unused Deny link: nothing changes.
    again = await world.client.post(
        links[Verdict.APPROVE], data={"confirm": "1"}, headers=SAME_SITE
    )
    assert again.status_code == 409, again.text
    assert "Nothing changed" in again.text
    denied = await world.client.post(links[Verdict.DENY], data={"confirm": "1"}, headers=SAME_SITE)
    assert denied.status_code == 409, denied.text
    request = await world.get(request_id)
    assert request.status is Status.APPROVED
    assert [(vote.person, vote.verdict) for vote in request.votes] == [
        (ALICE.name, Verdict.APPROVE)
    ]
    assert len(world.mail_thread(request_id, ALICE.email)) == 2

    ready = await world.client.get("/readyz")
    assert ready.json()["checks"]["email"] == "ok"
    report = await world.check()
    assert (report.final, report.cards_checked) == (1, len(APPROVERS))
