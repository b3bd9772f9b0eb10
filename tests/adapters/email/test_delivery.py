"""Email delivery against a real SMTP conversation: TLS, AUTH, relay errors, threading and
what arrives in the mailbox (escaped, defanged, threaded, marked as automatic)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from approvals.clock import ManualClock
from approvals.directory import Directory, Person
from approvals.machine import Status
from approvals.model import CreateCommand, Verdict
from approvals.outcomes import Created
from approvals.policy import Level, Policy, PolicySet
from approvals.ports import DeliveryError
from approvals.service import Rules
from approvals.store import SqlStore
from bot.runtime import Runtime
from tests.adapters.email.conftest import (
    about,
    address,
    body,
    confirm_client,
    email_adapter,
    is_first,
    links_in,
)
from tests.core.test_outbox import only_row
from tests.fakes.smtp import FakeSmtpRelay
from tests.world import build_test_runtime

MIN = timedelta(minutes=1)
ALICE = address("alice")
DESTINATION = f"email:user:{ALICE}"


def email_rules(quorum: int = 1) -> Rules:
    people = {name: Person(name, {"email": address(name)}) for name in ("alice", "bob")}
    level = Level(
        approvers=("alice", "bob"), notify=("dm",), timeout=30 * MIN, remind_every=10 * MIN
    )
    return Rules(
        policies=PolicySet((Policy(name="mail", quorum=quorum, levels=(level,)),)),
        directory=Directory(people=people, platforms=frozenset({"email"})),
    )


async def create(runtime: Runtime, **fields: object) -> str:
    command = CreateCommand(
        agent="deploy-bot",
        action=str(fields.get("action", "db.migrate")),
        title=str(fields.get("title", "Migrate the orders table")),
        details=str(fields.get("details", "")),
        params=dict(fields.get("params", {"table": "orders"})),  # type: ignore[call-overload]
        requested_by=fields.get("requested_by"),  # type: ignore[arg-type]
    )
    outcome = await runtime.service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


@pytest.fixture
def runtime(store: SqlStore, clock: ManualClock) -> Runtime:
    return build_test_runtime(store, clock, email_rules())


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_card_arrives_over_tls_with_auth(
    tls: str, tmp_path: Path, runtime: Runtime
) -> None:
    relay = FakeSmtpRelay(certificate_dir=tmp_path, tls=tls)  # type: ignore[arg-type]
    await relay.start()
    try:
        runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
        request_id = await create(runtime)
        await runtime.dispatcher.drain()
        [mail] = relay.to(ALICE)
        [received] = [item for item in relay.received if ALICE in item.recipients]
        assert received.tls
        assert received.authenticated
        assert mail["Subject"] == "[signoff] Approval needed: Migrate the orders table"
        assert mail["Auto-Submitted"] == "auto-generated"
        assert mail["X-Auto-Response-Suppress"] == "All"
        assert about(mail, request_id)
        assert is_first(mail)
        assert set(links_in(mail)) == {Verdict.APPROVE, Verdict.DENY}
        html_part = body(mail, "html")
        assert "Approve</a>" in html_part
        assert "Deny</a>" in html_part
    finally:
        await relay.stop()


async def test_the_relays_rate_spaces_mail_to_different_people(
    tmp_path: Path, runtime: Runtime
) -> None:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    try:
        adapter = email_adapter(relay, runtime, rate_per_minute=600)  # one every 0.1 s
        runtime.dispatcher.use_adapter("email", adapter)
        for table in ("orders", "invoices"):  # two migrations; each mails alice and bob
            await create(runtime, title=f"Migrate the {table} table", params={"table": table})
        await runtime.dispatcher.drain()
        arrivals = sorted(item.at for item in relay.received)
        assert len(arrivals) == 4
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert min(gaps) >= 0.09, gaps
    finally:
        await relay.stop()


async def test_a_wrong_password_is_a_permanent_error(tmp_path: Path, runtime: Runtime) -> None:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    try:
        adapter = email_adapter(relay, runtime, password="wrong")
        card = await runtime.service.card(await create(runtime))
        assert card is not None
        from approvals.directory import Destination, DestinationKind

        with pytest.raises(DeliveryError) as caught:
            await adapter.send(card, Destination("email", DestinationKind.USER, ALICE))
        assert caught.value.permanent
        assert "535" in str(caught.value)
        assert relay.received == []
        assert not await adapter.check_health()
    finally:
        await relay.stop()


async def test_a_4xx_is_retried_and_the_card_arrives(
    relay: FakeSmtpRelay, runtime: Runtime, store: SqlStore, clock: ManualClock
) -> None:
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    relay.fail_next(451, "4.3.0 Try again later", to=ALICE)
    request_id = await create(runtime)
    await runtime.dispatcher.drain()
    assert relay.to(ALICE) == []
    assert relay.refused == 1
    row = await only_row(store, request_id, DESTINATION)
    assert row.state != "dead"
    assert "451" in row.last_error
    clock.advance(MIN)
    await runtime.dispatcher.drain()
    assert len(relay.to(ALICE)) == 1


async def test_a_5xx_is_dead_lettered_with_the_servers_answer(
    relay: FakeSmtpRelay, runtime: Runtime, store: SqlStore, clock: ManualClock
) -> None:
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    relay.fail_next(550, "5.1.1 mailbox unavailable", to=ALICE)
    request_id = await create(runtime)
    await runtime.dispatcher.drain()
    row = await only_row(store, request_id, DESTINATION)
    assert (row.state, row.last_error) == ("dead", "SMTP 550 5.1.1 mailbox unavailable")
    clock.advance(10 * MIN)
    await runtime.dispatcher.drain()
    assert relay.to(ALICE) == []


async def test_an_unreachable_relay_is_a_temporary_error(tmp_path: Path, runtime: Runtime) -> None:
    relay = FakeSmtpRelay(certificate_dir=tmp_path)
    await relay.start()
    adapter = email_adapter(relay, runtime)
    await relay.stop()  # the port is closed now
    card = await runtime.service.card(await create(runtime))
    assert card is not None
    from approvals.directory import Destination, DestinationKind

    with pytest.raises(DeliveryError) as caught:
        await adapter.send(card, Destination("email", DestinationKind.USER, ALICE))
    assert not caught.value.permanent


async def test_reminder_and_outcome_thread_under_the_first_message(
    relay: FakeSmtpRelay, runtime: Runtime, clock: ManualClock
) -> None:
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    request_id = await create(runtime)
    await runtime.dispatcher.drain()
    clock.advance(10 * MIN + timedelta(seconds=1))
    await runtime.service.process_due()
    await runtime.dispatcher.drain()
    client = await confirm_client(runtime)
    try:
        approve = links_in(relay.to(address("bob"))[-1])[Verdict.APPROVE]
        answer = await client.post(approve, data={"confirm": "1"})
        assert answer.status_code == 200, answer.text
    finally:
        await client.aclose()
    await runtime.dispatcher.drain()
    first, reminder, outcome = relay.to(ALICE)
    first_id = str(first["Message-ID"]).strip()
    assert first_id.startswith(f"<{request_id}.0.")
    assert first_id.endswith("@example.test>")
    assert len(first_id) < 78  # one header line: no folding
    for follow_up in (reminder, outcome):
        assert str(follow_up["In-Reply-To"]).strip() == first_id
        assert str(follow_up["References"]).strip() == first_id
        assert follow_up["Subject"] == first["Subject"]
        assert str(follow_up["Message-ID"]).strip() != first_id
    assert "Reminder" in body(reminder)
    assert links_in(reminder)
    assert "Approved by bob" in body(outcome)
    assert links_in(outcome) == {}
    assert (await runtime.service.get(request_id)).status is Status.APPROVED  # type: ignore[union-attr]


async def test_agent_text_is_escaped_defanged_and_kept_out_of_headers(
    relay: FakeSmtpRelay, runtime: Runtime
) -> None:
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    await create(
        runtime,
        title="Deploy\r\nBcc: victim@example.com <script>alert(1)</script>",
        details='Click <a href="https://evil.example.com/x">here</a> or www.evil.com',
        params={"url": "https://evil.example.com/login", "owner": "mallory@evil.com"},
        requested_by="<b>carol</b>",
    )
    await runtime.dispatcher.drain()
    [mail] = relay.to(ALICE)
    [received] = [item for item in relay.received if ALICE in item.recipients]
    assert received.recipients == [ALICE]
    assert mail["Bcc"] is None
    assert "\n" not in str(mail["Subject"])
    assert "victim[@]example[.]com" in str(mail["Subject"])
    html_part = body(mail, "html")
    assert "<script>" not in html_part
    assert "&lt;script&gt;" in html_part
    assert "&lt;b&gt;carol&lt;/b&gt;" in html_part
    assert 'href="https://evil' not in html_part
    for part in (html_part, body(mail)):
        assert "https://evil" not in part
        assert "www.evil" not in part
        assert "https[:]//evil" in part
        assert "mallory[@]evil[.]com" in part
    hrefs = [chunk.split('"', 1)[0] for chunk in html_part.split('href="')[1:]]
    assert hrefs
    assert all(href.startswith("http://127.0.0.1:8080/") for href in hrefs)


async def test_quorum_progress_is_mailed_once_per_approval(
    relay: FakeSmtpRelay, store: SqlStore, clock: ManualClock
) -> None:
    runtime = build_test_runtime(store, clock, email_rules(quorum=2))
    runtime.dispatcher.use_adapter("email", email_adapter(relay, runtime))
    await create(runtime)
    await runtime.dispatcher.drain()
    client = await confirm_client(runtime)
    try:
        approve = links_in(relay.to(ALICE)[0])[Verdict.APPROVE]
        assert (await client.post(approve, data={"confirm": "1"})).status_code == 200
    finally:
        await client.aclose()
    await runtime.dispatcher.drain()
    await runtime.dispatcher.drain()
    _first, progress = relay.to(address("bob"))
    assert "1 of 2 approvals" in body(progress)
    assert links_in(progress)
