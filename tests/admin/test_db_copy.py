"""`signoff db copy --to postgresql://...`: every table of a (live) SQLite database moved into
an empty PostgreSQL database in one transaction, checked before it commits."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy import Table, Text, cast, func, select, type_coerce
from sqlalchemy.engine import make_url
from sqlalchemy.types import JSON

from approvals.clock import ManualClock
from approvals.grants import GrantRule
from approvals.machine import Status
from approvals.model import CreateCommand, LinkUse, Verdict, VoteCommand
from approvals.outcomes import AlreadyDecided, Applied, Created, NotAllowed
from approvals.policy import PolicySet
from approvals.ports import DeliveryError
from approvals.receipts import ReceiptSigner
from approvals.service import Rules
from approvals.store import MIGRATIONS_DIR, SqlStore
from approvals.store.copy import CopyCheckError, CopyError, copy_sqlite_to_postgresql
from approvals.tables import AUDIT, DELIVERIES, REQUESTS, metadata
from bot import cli
from bot.runtime import Runtime
from tests.admin.serving import free_port
from tests.cli import SIGNOFF
from tests.fakes.recording import RecordingAdapter
from tests.waiting import wait_for
from tests.world import (
    POSTGRES_URL,
    build_test_runtime,
    deliver_through,
    make_directory,
    make_policies,
    missing_prerequisite,
)

PASSWORD = "s3cret-Pw0rd"  # trust authentication on the test server: accepted, never needed


def rules() -> Rules:
    """The standard rules; the default policy allows time-boxed grants (a grants row)."""
    policies = tuple(
        replace(policy, grants=GrantRule(max=timedelta(hours=1)))
        if policy.name == "default"
        else policy
        for policy in make_policies().policies
    )
    return Rules(policies=PolicySet(policies), directory=make_directory())


@pytest.fixture
async def target_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database of this test's own (in a time zone far from UTC,
    so a timestamp taken as local time would show), dropped afterwards."""
    base = make_url(POSTGRES_URL)
    name = f"signoff_copy_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(
            host=base.host, port=base.port, user=base.username, database=base.database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        missing_prerequisite(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    try:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError as exc:
            missing_prerequisite(f"the role of {POSTGRES_URL} may not create databases: {exc}")
        await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'")
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def target_tables(url: str) -> set[str]:
    """The tables in the target database's public schema."""
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


# -- a database with a bit of everything -------------------------------------------------------


@dataclass
class Filled:
    """What :func:`fill` made, for the tests to look for on the copy."""

    requests: dict[Status, list[str]] = field(default_factory=dict)
    half_voted: str = ""
    agent_key: str = ""
    login_token: str = ""
    session: str = ""
    link: str = ""
    link_request: str = ""
    receipt_key_id: str = ""


async def created(runtime: Runtime, command: CreateCommand) -> str:
    outcome = await runtime.service.create(command)
    assert isinstance(outcome, Created), outcome
    return outcome.request.id


async def voted(runtime: Runtime, request_id: str, identity: str, verdict: Verdict, **kw: Any):
    return await runtime.service.vote(
        VoteCommand(
            request_id=request_id, platform="slack", identity=identity, verdict=verdict, **kw
        )
    )


async def fill(runtime: Runtime, clock: ManualClock) -> Filled:
    """Requests in every state with their votes, audit entries, outbox rows and cards, and
    keys, sign-ins, sessions, receipts and decision links: through the service, as signoff
    itself writes them."""
    service, access = runtime.service, runtime.access
    filled = Filled()

    def note(status: Status, request_id: str) -> None:
        filled.requests.setdefault(status, []).append(request_id)

    # Deadlines first: these two pass theirs below (one denied, one expired by policy).
    timed_out = await created(
        runtime,
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy that nobody answers"),
    )
    expiring = await created(
        runtime, CreateCommand(agent="cache-bot", action="cache.flush", title="Flush")
    )
    clock.advance(timedelta(minutes=31))
    assert await service.process_due() >= 2
    note(Status.DENIED, timed_out)
    note(Status.EXPIRED, expiring)

    approved = await created(
        runtime,
        CreateCommand(
            agent="deploy-bot",
            action="deploy.web",
            title="Deploy web 1.2 — «ünïcode» ✓",
            details="line one\nline two\ttabbed",
            params={
                "version": "1.2",
                "replicas": 3,
                "ratio": 0.1,
                "flags": [True, False, None],
                "nested": {"empty": {}, "nul": "a\u0000b", "big": 2**62},
            },
            requested_by="carol",
            idempotency_key="deploy-1.2",
        ),
    )
    # Approved for an hour: a time-boxed grant over params with a NUL and a big number.
    outcome = await voted(
        runtime, approved, "U0ALICE", Verdict.APPROVE, grant_for=timedelta(hours=1)
    )
    assert isinstance(outcome, Applied)
    note(Status.APPROVED, approved)

    denied = await created(
        runtime, CreateCommand(agent="deploy-bot", action="deploy.api", title="Deploy api")
    )
    outcome = await voted(runtime, denied, "U0BOB", Verdict.DENY, reason="not on a Friday")
    assert isinstance(outcome, Applied)
    note(Status.DENIED, denied)

    cancelled = await created(
        runtime, CreateCommand(agent="deploy-bot", action="deploy.db", title="Cancelled")
    )
    assert isinstance(await service.cancel(cancelled, "deploy-bot", "changed my mind"), Applied)
    note(Status.CANCELLED, cancelled)

    note(
        Status.APPROVED,
        await created(
            runtime, CreateCommand(agent="deploy-bot", action="logs.read", title="Read logs")
        ),
    )  # approved by policy
    note(
        Status.DENIED,
        await created(
            runtime, CreateCommand(agent="deploy-bot", action="db.drop_database", title="Drop it")
        ),
    )  # denied by policy

    # prod-db: a quorum of two; one vote counted, another click refused (and audited).
    filled.half_voted = await created(
        runtime,
        CreateCommand(
            agent="deploy-bot", action="db.migrate", title="Migrate prod", params={"env": "prod"}
        ),
    )
    assert isinstance(await voted(runtime, filled.half_voted, "U0DAVE", Verdict.APPROVE), Applied)
    assert isinstance(
        await voted(runtime, filled.half_voted, "U0NOBODY", Verdict.APPROVE), NotAllowed
    )
    note(Status.PENDING, filled.half_voted)

    # A vote through a signed decision link (spent), and a link still unused.
    filled.link_request = await created(
        runtime, CreateCommand(agent="deploy-bot", action="deploy.web", title="By mail")
    )
    expires = clock.now() + timedelta(hours=1)
    used = await service.links.issue(
        platform="slack",
        identity="U0ALICE",
        request_id=filled.link_request,
        verdict=Verdict.APPROVE,
        expires_at=expires,
    )
    claim = await service.links.read(used)
    assert claim is not None
    link = LinkUse(nonce=claim.nonce, expires_at=expires)
    assert isinstance(
        await voted(runtime, filled.link_request, "U0ALICE", Verdict.APPROVE, link=link), Applied
    )
    note(Status.APPROVED, filled.link_request)
    pending = await created(
        runtime, CreateCommand(agent="deploy-bot", action="deploy.web", title="Still waiting")
    )
    note(Status.PENDING, pending)
    filled.link = await service.links.issue(
        platform="slack",
        identity="U0BOB",
        request_id=pending,
        verdict=Verdict.DENY,
        expires_at=expires,
    )

    # Cards delivered (message references kept); one channel paused by a 429.
    slack = RecordingAdapter("slack")
    telegram = RecordingAdapter(
        "telegram", failures=[DeliveryError("429", retry_after=timedelta(seconds=30))]
    )
    await deliver_through(runtime, {"slack": slack, "telegram": telegram}).drain()
    assert slack.calls

    # Credentials: a live key, a revoked one, webhook secrets (one rotated), a redeemed
    # sign-in link and an unused one, a session, the receipt key.
    filled.agent_key = await access.create_agent_key("deploy-bot")
    await access.create_agent_key("old-bot")
    assert await access.revoke_agent_keys("old-bot") == 1
    await access.webhook_secret("deploy-bot")
    await access.webhook_secret("cache-bot")
    await access.rotate_webhook_secret("cache-bot")
    assert await access.redeem_login_token(await access.create_login_token("bob")) == "bob"
    filled.login_token = await access.create_login_token("alice")
    filled.session = await access.create_session("alice")
    request = await service.get(approved)
    assert request is not None
    filled.receipt_key_id = (await ReceiptSigner(runtime.store, clock).sign(request))["key_id"]
    return filled


def edit_sqlite(store: SqlStore, statement: str, *values: Any) -> None:
    """Change the SQLite database behind signoff's back."""
    db = sqlite3.connect(make_url(store.url).database or "")
    try:
        with db:
            assert db.execute(statement, values).rowcount == 1
    finally:
        db.close()


# -- comparing the two databases ------------------------------------------------------------------


async def table_rows(store: SqlStore, table: Table) -> list[tuple[Any, ...]]:
    """Every row of ``table``, in primary key order (sorted here: PostgreSQL's collation
    may order text differently from SQLite)."""
    keys = [table.columns.keys().index(column.name) for column in table.primary_key.columns]
    async with store.read() as reader:
        rows = [tuple(row) for row in (await reader.conn.execute(select(table))).all()]
    return sorted(rows, key=lambda row: tuple(row[key] for key in keys))


async def null_counts(store: SqlStore, table: Table) -> dict[str, int]:
    """How many SQL NULLs each JSON column holds (JSON ``null`` is not one)."""
    counts: dict[str, int] = {}
    async with store.read() as reader:
        for column in table.columns:
            if isinstance(column.type, JSON):
                query = select(func.count()).select_from(table).where(column.is_(None))
                counts[column.name] = (await reader.conn.execute(query)).scalar_one()
    return counts


async def params_text(store: SqlStore) -> dict[str, str]:
    """Each request's params as the database holds the text."""
    column = REQUESTS.c.params
    raw = type_coerce(column, Text) if store.is_sqlite else cast(column, Text)
    async with store.read() as reader:
        rows = (await reader.conn.execute(select(REQUESTS.c.id, raw))).all()
    return {str(request_id): str(value) for request_id, value in rows}


async def assert_same_contents(source: SqlStore, target: SqlStore) -> None:
    for table in metadata.sorted_tables:
        assert await table_rows(target, table) == await table_rows(source, table), table.name
        assert await null_counts(target, table) == await null_counts(source, table), table.name
    assert await params_text(target) == await params_text(source)


# -- the copy ----------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_every_row_of_every_table_arrives_as_it_was(
    sqlite_store: SqlStore, clock: ManualClock, target_url: str
) -> None:
    filled = await fill(build_test_runtime(sqlite_store, clock, rules()), clock)
    empty = [t.name for t in metadata.sorted_tables if not await table_rows(sqlite_store, t)]
    assert empty == [], "fill() must put rows in every table, or the copy of those is untested"
    assert set(filled.requests) == set(Status)
    # signoff writes a JSON null into a card's reference until the card is sent; the column
    # takes a SQL NULL too, and the copy must keep the two apart.
    edit_sqlite(
        sqlite_store,
        "UPDATE deliveries SET ref = NULL WHERE rowid = "
        "(SELECT min(rowid) FROM deliveries WHERE ref = 'null')",
    )
    assert (await null_counts(sqlite_store, DELIVERIES))["ref"] == 1
    refs = [row[3] for row in await table_rows(sqlite_store, DELIVERIES)]
    assert refs.count(None) > 1  # JSON nulls as well

    result = await copy_sqlite_to_postgresql(sqlite_store.url, target_url)

    assert [table.name for table in result.tables] == [t.name for t in metadata.sorted_tables]
    assert not result.source_changed
    target = SqlStore(target_url)
    try:
        await assert_same_contents(sqlite_store, target)
        for request_id in [i for ids in filled.requests.values() for i in ids]:
            assert await target.get_request(request_id) == await sqlite_store.get_request(
                request_id
            )
        verification = await target.verify_audit()
        assert verification.ok, verification.broken
        assert verification.checked == result.audit_entries > 0
        for table in result.tables:
            assert len(await table_rows(target, metadata.tables[table.name])) == table.rows
    finally:
        await target.close()


@pytest.mark.postgres
async def test_signoff_runs_on_the_copy_and_decides_the_old_requests(
    sqlite_store: SqlStore, clock: ManualClock, target_url: str
) -> None:
    filled = await fill(build_test_runtime(sqlite_store, clock, rules()), clock)
    await copy_sqlite_to_postgresql(sqlite_store.url, target_url)

    target = SqlStore(target_url)
    runtime = build_test_runtime(target, clock, rules())
    await runtime.start()
    try:
        service, access = runtime.service, runtime.access
        for status, ids in filled.requests.items():
            for request_id in ids:
                request = await service.get(request_id)
                assert request is not None
                assert request.status is status
        # The second vote of the quorum decides it (a new vote row: the id sequence moved on).
        outcome = await voted(runtime, filled.half_voted, "U0ALICE", Verdict.APPROVE)
        assert isinstance(outcome, Applied)
        assert outcome.request.status is Status.APPROVED
        approved = filled.requests[Status.APPROVED][0]
        again = await voted(runtime, approved, "U0BOB", Verdict.DENY, reason="too late")
        assert isinstance(again, AlreadyDecided)
        # New requests get new outbox rows after the copied ones.
        fresh = await created(
            runtime,
            CreateCommand(
                agent="deploy-bot",
                action="deploy.web",
                title="After the move",
                params={"moved": True},
            ),
        )
        assert (await service.get(fresh)) is not None
        # Credentials made on SQLite work on PostgreSQL.
        assert await access.agent_for_key(filled.agent_key) == "deploy-bot"
        assert await access.redeem_login_token(filled.login_token) == "alice"
        session = await access.session(filled.session)
        assert session is not None
        assert session.person == "alice"
        claim = await service.links.read(filled.link)
        assert claim is not None
        assert claim.request_id in filled.requests[Status.PENDING]
        decided = await service.get(filled.link_request)
        assert decided is not None
        receipt = await ReceiptSigner(target, clock).sign(decided)
        assert receipt["key_id"] == filled.receipt_key_id
        verification = await target.verify_audit()
        assert verification.ok, verification.broken
    finally:
        await runtime.stop()
        await target.close()


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql+asyncpg"])
async def test_the_url_forms_config_accepts_are_accepted(
    sqlite_store: SqlStore, clock: ManualClock, target_url: str, scheme: str
) -> None:
    await created(
        build_test_runtime(sqlite_store, clock, rules()),
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Deploy"),
    )
    url = scheme + "://" + target_url.partition("://")[2]
    result = await copy_sqlite_to_postgresql(sqlite_store.url, url)
    assert {t.name: t.rows for t in result.tables}["requests"] == 1


# -- under live traffic ----------------------------------------------------------------------------


@dataclass
class Traffic:
    """A service creating and deciding requests as fast as it can until stopped."""

    runtime: Runtime
    created: list[str] = field(default_factory=list)
    decided: dict[str, Status] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            number = len(self.created)
            request_id = await created(
                self.runtime,
                CreateCommand(
                    agent=f"bot-{number % 3}",
                    action="deploy.web",
                    title=f"Deploy #{number}",
                    params={"n": number},
                ),
            )
            self.created.append(request_id)
            if number % 3 == 0:
                outcome = await voted(self.runtime, request_id, "U0ALICE", Verdict.APPROVE)
            elif number % 3 == 1:
                outcome = await self.runtime.service.cancel(request_id, f"bot-{number % 3}")
            else:
                continue
            assert isinstance(outcome, Applied)
            self.decided[request_id] = outcome.request.status

    def made(self, count: int) -> Callable[[], Awaitable[bool]]:
        async def enough() -> bool:
            return len(self.created) >= count

        return enough


FINAL_KINDS = {"decided", "cancelled", "expired"}


async def audit_rows(store: SqlStore) -> list[tuple[Any, ...]]:
    return await table_rows(store, AUDIT)


@pytest.mark.postgres
async def test_a_copy_under_live_traffic_is_one_committed_state(
    sqlite_store: SqlStore, clock: ManualClock, target_url: str
) -> None:
    traffic = Traffic(build_test_runtime(sqlite_store, clock, rules()))
    writing = asyncio.create_task(traffic.run())
    try:
        await wait_for(traffic.made(60))
        before, decided_before = list(traffic.created), dict(traffic.decided)
        result = await copy_sqlite_to_postgresql(sqlite_store.url, target_url, batch=7)
        during = len(traffic.created)
        await wait_for(traffic.made(during + 20))  # signoff kept writing after it, too
    finally:
        traffic.stop.set()
        await writing
    assert result.source_changed  # the service wrote while the snapshot was open

    target = SqlStore(target_url)
    try:
        verification = await target.verify_audit()
        assert verification.ok, verification.broken
        copied = {row[0]: row for row in await table_rows(target, REQUESTS)}
        # Everything committed before the copy began is there, decided as it was.
        assert set(before) <= copied.keys() <= set(traffic.created)
        for request_id, status in decided_before.items():
            request = await target.get_request(request_id)
            assert request is not None
            assert request.status is status
        # One committed state: the copied chain is the start of the source's, and each
        # copied request is final exactly when the copied chain says it was decided.
        target_audit = await audit_rows(target)
        assert target_audit == (await audit_rows(sqlite_store))[: len(target_audit)]
        finished = {row[3] for row in target_audit if row[2] in FINAL_KINDS}
        for request_id in copied:
            request = await target.get_request(request_id)
            assert request is not None
            assert request.status.is_final == (request_id in finished), request_id
        assert len(copied) < len(traffic.created)
    finally:
        await target.close()


def config_file(directory: Path, url: str, name: str = "signoff.yaml") -> Path:
    path = directory / name
    path.write_text(
        f'version: 1\ndatabase: {{url: "{url}"}}\npolicies:\n'
        "  - name: default\n    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n"
        "people:\n  alice: {}\n",
        encoding="utf-8",
    )
    return path


def with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


async def signoff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``signoff ARGS`` in this process (on a thread of its own: it runs its own event
    loop); its exit code, stdout and stderr."""
    code = await asyncio.to_thread(cli.run, list(args))
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    return code, out, err


async def signoff_copy(
    capsys: pytest.CaptureFixture[str], config: Path, to: str
) -> tuple[int, str]:
    code, _, err = await signoff(capsys, "db", "copy", "--config", str(config), "--to", to)
    return code, err


@pytest.mark.postgres
async def test_the_command_copies_a_live_database_and_says_what_to_do_next(
    sqlite_store: SqlStore,
    clock: ManualClock,
    target_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_file(tmp_path, sqlite_store.url)
    traffic = Traffic(build_test_runtime(sqlite_store, clock, rules()))
    writing = asyncio.create_task(traffic.run())
    try:
        await wait_for(traffic.made(30))
        process = await asyncio.create_subprocess_exec(
            str(SIGNOFF),
            "db",
            "copy",
            "--config",
            str(config),
            "--to",
            with_password(target_url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "SIGNOFF_CONFIG"},
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        traffic.stop.set()
        await writing
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 0, stderr
    assert PASSWORD not in stdout + stderr
    tables = len(metadata.sorted_tables)
    assert f"{tables} tables" in stdout
    assert "row counts equal in every table; audit chain verified" in stdout
    plain = target_url.replace("postgresql://postgres@", "postgresql://postgres:${PGPASSWORD}@")
    assert f"next: set database.url to {plain} in {config} and restart signoff" in stdout
    assert "signoff wrote to" in stderr
    assert "stop signoff first" in stderr

    moved = config_file(tmp_path, target_url, "moved.yaml")
    code, stdout, stderr = await signoff(capsys, "audit", "verify", "--config", str(moved))
    assert code == 0, stderr
    assert stdout.startswith("audit chain OK")


# -- refusals and failures ---------------------------------------------------------------------


@pytest.mark.postgres
async def test_a_target_with_signoff_data_is_refused_and_left_alone(
    sqlite_store: SqlStore,
    clock: ManualClock,
    target_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime = build_test_runtime(sqlite_store, clock, rules())
    await created(
        runtime,
        CreateCommand(agent="deploy-bot", action="deploy.web", title="One", params={"n": 1}),
    )
    await copy_sqlite_to_postgresql(sqlite_store.url, target_url)
    await created(
        runtime,
        CreateCommand(agent="deploy-bot", action="deploy.web", title="Two", params={"n": 2}),
    )

    code, stderr = await signoff_copy(
        capsys, config_file(tmp_path, sqlite_store.url), with_password(target_url)
    )

    assert code == 2
    assert "already holds signoff data" in stderr
    assert "requests" in stderr.partition("(in ")[2]
    target = SqlStore(target_url)
    try:
        assert len(await table_rows(target, REQUESTS)) == 1
    finally:
        await target.close()


@pytest.mark.postgres
async def test_a_failed_copy_leaves_the_target_as_it_was(
    sqlite_store: SqlStore,
    clock: ManualClock,
    target_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime = build_test_runtime(sqlite_store, clock, rules())
    for number in range(30):
        await created(
            runtime,
            CreateCommand(
                agent="deploy-bot", action="deploy.web", title=f"#{number}", params={"n": number}
            ),
        )
    # SQLite keeps what PostgreSQL's varchar(200) refuses.
    edit_sqlite(sqlite_store, "UPDATE requests SET agent = ? WHERE rowid = 17", "x" * 201)

    code, stderr = await signoff_copy(
        capsys, config_file(tmp_path, sqlite_store.url), with_password(target_url)
    )

    assert code == 2
    assert "copying table requests failed" in stderr
    assert "nothing was kept" in stderr
    assert await target_tables(target_url) == set()  # not even the schema


@pytest.mark.postgres
async def test_a_copy_whose_chain_does_not_verify_is_not_kept(
    sqlite_store: SqlStore,
    clock: ManualClock,
    target_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime = build_test_runtime(sqlite_store, clock, rules())
    for number in range(5):
        await created(
            runtime,
            CreateCommand(
                agent="deploy-bot", action="deploy.web", title=f"#{number}", params={"n": number}
            ),
        )
    edit_sqlite(sqlite_store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")

    with pytest.raises(CopyCheckError, match="breaks at entry 3"):
        await copy_sqlite_to_postgresql(sqlite_store.url, target_url)
    assert await target_tables(target_url) == set()
    code, stderr = await signoff_copy(capsys, config_file(tmp_path, sqlite_store.url), target_url)
    assert code == 1
    assert "audit chain breaks at entry 3" in stderr


@pytest.mark.postgres
async def test_a_target_in_use_is_given_up_on_after_the_lock_timeout(
    sqlite_store: SqlStore, clock: ManualClock, target_url: str
) -> None:
    await created(
        build_test_runtime(sqlite_store, clock, rules()),
        CreateCommand(agent="deploy-bot", action="deploy.web", title="One"),
    )
    migrated = SqlStore(target_url)
    await migrated.migrate()
    await migrated.close()
    parsed = make_url(target_url)
    writer = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        transaction = writer.transaction()
        await transaction.start()  # signoff on the target, in the middle of a write
        await writer.execute("INSERT INTO destinations VALUES ('x', now())")
        with pytest.raises(CopyError, match=r"lock timeout .*is signoff running on it"):
            await copy_sqlite_to_postgresql(sqlite_store.url, target_url, lock_timeout=0.2)
        await transaction.rollback()
    finally:
        await writer.close()
    target = SqlStore(target_url)
    try:
        assert await table_rows(target, REQUESTS) == []
    finally:
        await target.close()


@pytest.mark.postgres
async def test_a_source_at_an_older_schema_is_refused(
    target_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.db"
    alembic = Config()
    alembic.set_main_option("script_location", str(MIGRATIONS_DIR))
    alembic.set_main_option("sqlalchemy.url", f"sqlite:///{old}")
    alembic_command.upgrade(alembic, "0007")

    code, stderr = await signoff_copy(capsys, config_file(tmp_path, f"sqlite:///{old}"), target_url)

    assert code == 2
    assert "revision 0007" in stderr
    assert "signoff db upgrade" in stderr
    assert await target_tables(target_url) == set()


async def test_a_postgresql_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, "postgresql://signoff@db.internal:5432/signoff")
    code, stderr = await signoff_copy(
        capsys, config, "postgresql://postgres@127.0.0.1:5432/elsewhere"
    )
    assert code == 2
    assert "is PostgreSQL already" in stderr
    assert "pg_dump" in stderr


@pytest.mark.parametrize(
    ("to", "says"),
    [
        (f"mysql://root:{PASSWORD}@127.0.0.1/signoff", "not a PostgreSQL URL"),
        ("sqlite:///elsewhere.db", "the copy goes to PostgreSQL"),
        ("signoff.example", "not a PostgreSQL URL"),
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432", "name the database"),
    ],
)
async def test_a_bad_target_url_is_refused(
    tmp_path: Path, to: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, f"sqlite:///{tmp_path / 'live.db'}")
    code, stderr = await signoff_copy(capsys, config, to)
    assert code == 2
    assert says in stderr


async def test_an_unreachable_server_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, f"sqlite:///{tmp_path / 'live.db'}")
    assert (await signoff(capsys, "db", "upgrade", "--config", str(config)))[0] == 0
    to = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/signoff"
    code, stderr = await signoff_copy(capsys, config, to)
    assert code == 2
    assert stderr.startswith("cannot connect to postgresql://postgres:***@127.0.0.1:")


async def test_a_missing_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, f"sqlite:///{tmp_path / 'nothing.db'}")
    code, stderr = await signoff_copy(
        capsys, config, "postgresql://postgres@127.0.0.1:5432/signoff"
    )
    assert code == 2
    assert "nothing.db: no such database" in stderr
    assert not (tmp_path / "nothing.db").exists()
