"""A locked SQLite database: the inbox asks the person to retry and records nothing meanwhile."""

from __future__ import annotations

import sqlite3

from approvals.machine import Status
from approvals.store import SqlStore
from tests.web.conftest import inbox_harness
from tests.world import build_test_runtime


async def test_vote_while_the_database_is_locked_asks_to_retry(tmp_path, rules, clock):
    path = tmp_path / "busy.db"
    store = SqlStore(f"sqlite:///{path}", busy_timeout=0.2)
    await store.migrate()
    inbox = await inbox_harness(build_test_runtime(store, clock, rules))
    other_process = sqlite3.connect(path, isolation_level=None)
    try:
        request = await inbox.create()
        alice = await inbox.signed_in("alice")
        csrf = await inbox.csrf_for(alice, request.id)

        other_process.execute("BEGIN IMMEDIATE")  # holds the write lock past the busy timeout
        busy = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "2"
        assert "nothing was recorded" in busy.text
        assert "try again" in busy.text
        assert "Traceback" not in busy.text
        other_process.execute("ROLLBACK")
        current = await inbox.service.get(request.id)
        assert current is not None
        assert current.votes == ()

        retried = await alice.post(f"/requests/{request.id}/approve", data={"csrf_token": csrf})
        assert retried.status_code == 303
        current = await inbox.service.get(request.id)
        assert current is not None
        assert current.status is Status.APPROVED
    finally:
        other_process.close()
        await inbox.close()
        await store.close()
