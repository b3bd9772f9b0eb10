"""Housekeeping deletes spent sign-ins, old finished outbox rows, old idempotency keys and
the spent decision links of final requests."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from approvals.access import AccessStore
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.outcomes import Created
from approvals.retention import purge_expired
from approvals.store import links
from approvals.tables import (
    IDEMPOTENCY,
    LOGIN_TOKENS,
    OUTBOX,
    REQUESTS,
    SPENT_LINKS,
    WEB_SESSIONS,
)
from tests.fakes.recording import RecordingAdapter


async def count(store, table, *where) -> int:
    async with store.read() as reader:
        return int(
            (
                await reader.conn.execute(select(func.count()).select_from(table).where(*where))
            ).scalar_one()
        )


async def test_spent_rows_go_and_live_ones_stay(service, store, clock):
    access = AccessStore(store, clock)
    await access.create_login_token("alice")
    await access.create_session("alice")
    decided = await service.create(
        CreateCommand(
            agent="deploy-bot", action="deploy.web", title="Deploy", idempotency_key="k-1"
        )
    )
    assert isinstance(decided, Created)
    await service.vote(VoteCommand(decided.request.id, "slack", "U0ALICE", Verdict.APPROVE))
    dispatcher = OutboxDispatcher(store, {"slack": RecordingAdapter("slack")}, clock)
    await dispatcher.drain()
    finished_before = await count(store, OUTBOX, OUTBOX.c.state == "sent")
    assert finished_before == 2  # the card and its edit

    assert (await purge_expired(store, clock.now())).total == 0

    clock.advance(timedelta(days=8))
    await access.create_login_token("bob")
    fresh_session = await access.create_session("bob")
    pending = await service.create(
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Later", idempotency_key="k-2")
    )
    assert isinstance(pending, Created)

    purged = await purge_expired(store, clock.now())

    assert (purged.login_tokens, purged.web_sessions) == (1, 1)
    assert (purged.outbox_rows, purged.idempotency_keys) == (finished_before, 1)
    assert await count(store, LOGIN_TOKENS) == 1
    assert (await access.session(fresh_session)) is not None
    assert await count(store, WEB_SESSIONS) == 1
    assert await count(store, OUTBOX, OUTBOX.c.state == "pending") == 1
    assert await count(store, IDEMPOTENCY) == 1
    assert await count(store, REQUESTS) == 2
    assert (await store.verify_audit()).ok
    assert (await purge_expired(store, clock.now())).total == 0


async def test_spent_links_go_once_their_request_is_final(service, store, clock):
    requests = []
    for title in ("Decided", "Still open"):
        created = await service.create(
            CreateCommand(
                agent="deploy-bot", action="deploy.web", title=title, params={"title": title}
            )
        )
        assert isinstance(created, Created)
        requests.append(created.request.id)
    decided, still_open = requests
    for nonce, request_id in (("n-decided", decided), ("n-open", still_open)):
        await store.run(
            lambda tx, nonce=nonce, request_id=request_id: links.spend_link(
                tx, nonce=nonce, request_id=request_id, at=clock.now()
            )
        )
    await service.vote(VoteCommand(decided, "slack", "U0ALICE", Verdict.APPROVE))

    purged = await purge_expired(store, clock.now())

    assert purged.spent_links == 1
    assert await count(store, SPENT_LINKS, SPENT_LINKS.c.request_id == decided) == 0
    assert await count(store, SPENT_LINKS, SPENT_LINKS.c.request_id == still_open) == 1
