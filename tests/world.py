"""One test world: signoff as ``build_runtime`` wires it, on a test store and a test clock.

A pytest plugin (``-p tests.world`` in pyproject.toml), so every test has these fixtures:

- ``store``: a migrated, empty store, once on SQLite and once on PostgreSQL;
  ``sqlite_store`` for tests about SQLite's own behaviour.
- ``clock``: a :class:`~approvals.clock.ManualClock`.
- ``rules``: the standard policies and directory (:func:`make_policies`,
  :func:`make_directory`); a test module overrides ``rules`` to bring its own.
- ``runtime``: the runtime :func:`bot.app.build_runtime` makes from those, not started:
  its service, outbox dispatcher, access store and adapters are the application's own
  wiring. ``service`` is its service. :func:`build_test_runtime` builds one with adapters (the
  real adapters against the fake platforms of :mod:`tests.fakes`), and
  :func:`deliver_through` points its outbox at adapters a test started itself.

The core's own unit tests (``tests/core``) build the core objects they test directly.

Under ``CI=true`` a missing prerequisite (the PostgreSQL server) fails the test instead of
skipping it.
"""

from __future__ import annotations

import asyncio
import atexit
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from approvals.clock import Clock, ManualClock
from approvals.directory import Destination, DestinationKind, Directory, Person
from approvals.outbox import OutboxDispatcher
from approvals.policy import (
    AutoDecision,
    EditsRule,
    Level,
    Match,
    ParamPredicate,
    Policy,
    PolicySet,
    PredicateOp,
    TimeoutOutcome,
)
from approvals.ports import Adapter
from approvals.service import ApprovalService, Rules
from approvals.store import SqlStore
from bot.app import AppOptions, build_runtime
from bot.runtime import Runtime
from config import default_config

# python-telegram-bot's retry_after in seconds is deprecated; ask for the timedelta form,
# as `signoff` itself does.
os.environ.setdefault("PTB_TIMEDELTA", "1")

POSTGRES_URL = os.environ.get(
    "SIGNOFF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_prerequisite(reason: str) -> None:
    """Skip locally, fail on CI: CI must have everything the suite needs."""
    if IN_CI:
        pytest.fail(f"CI is missing a prerequisite: {reason}")
    pytest.skip(reason)


_postgres_url: str | None = None


async def _private_postgres_url() -> str:
    """A database of this test run's own, so that parallel runs never share tables.

    Made from the ``test`` database's server; falls back to ``test`` itself when the role
    may not create databases.
    """
    import asyncpg

    base = make_url(POSTGRES_URL)
    name = f"signoff_test_{os.getpid()}"
    admin = await asyncpg.connect(
        host=base.host, port=base.port, user=base.username, database=base.database
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError:
        return POSTGRES_URL
    finally:
        await admin.close()
    atexit.register(_drop_database, base, name)
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_database(base, name: str) -> None:
    import asyncpg

    async def drop() -> None:
        admin = await asyncpg.connect(
            host=base.host, port=base.port, user=base.username, database=base.database
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


async def _postgres_store() -> SqlStore:
    """A migrated, emptied store on this run's PostgreSQL database."""
    global _postgres_url
    if _postgres_url is None:
        probe = SqlStore(POSTGRES_URL)
        try:
            await probe.ping()
        except Exception as exc:
            missing_prerequisite(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
        finally:
            await probe.close()
        url = await _private_postgres_url()
        migrating = SqlStore(url)
        await migrating.drop_everything()
        await migrating.migrate()
        await migrating.close()
        _postgres_url = url
    store = SqlStore(_postgres_url)
    await store.delete_all_data()
    return store


def postgres_url() -> str:
    """The URL the PostgreSQL store fixture uses (after the first one was made)."""
    assert _postgres_url is not None
    return _postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated, empty store: SQLite (file, WAL) and PostgreSQL, one test each."""
    if request.param == "sqlite":
        sql_store = SqlStore(f"sqlite:///{tmp_path / 'signoff.db'}")
        await sql_store.migrate()
    else:
        sql_store = await _postgres_store()
    yield sql_store
    await sql_store.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated SQLite store only, for tests about SQLite's own behaviour."""
    sql_store = SqlStore(f"sqlite:///{tmp_path / 'signoff.db'}")
    await sql_store.migrate()
    yield sql_store
    await sql_store.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_directory() -> Directory:
    people = {
        "alice": Person("alice", {"slack": "U0ALICE", "telegram": "100001", "discord": "200001"}),
        "bob": Person("bob", {"slack": "U0BOB", "telegram": "100002"}),
        "carol": Person("carol", {"discord": "200003"}),
        "dave": Person("dave", {"slack": "U0DAVE"}),
        "erin": Person("erin", {"telegram": "100005"}),
    }
    channels = {
        "ops-slack": (Destination("slack", DestinationKind.CHANNEL, "C0OPS"),),
        "ops-telegram": (Destination("telegram", DestinationKind.CHANNEL, "-1001234"),),
        "ops-discord": (Destination("discord", DestinationKind.CHANNEL, "300001"),),
    }
    return Directory(
        people=people, channels=channels, platforms=frozenset({"slack", "telegram", "discord"})
    )


def make_policies() -> PolicySet:
    return PolicySet(
        (
            Policy(
                name="read-only",
                match=Match(actions=("*.read", "*.list")),
                decision=AutoDecision.APPROVE,
                levels=(),
            ),
            Policy(
                name="forbidden",
                match=Match(actions=("db.drop_database",)),
                decision=AutoDecision.DENY,
                levels=(),
            ),
            Policy(
                name="prod-db",
                match=Match(
                    actions=("db.*",),
                    params=(ParamPredicate("env", PredicateOp.EQ, "prod"),),
                ),
                quorum=2,
                require_reason=True,
                levels=(
                    Level(
                        approvers=("alice", "bob", "dave"),
                        notify=("ops-slack", "ops-telegram"),
                        timeout=timedelta(minutes=15),
                        remind_every=timedelta(minutes=5),
                    ),
                    Level(approvers=("carol",), notify=("dm",), timeout=timedelta(hours=1)),
                ),
                on_timeout=TimeoutOutcome.DENY,
            ),
            Policy(
                name="expiring",
                match=Match(actions=("cache.*",)),
                levels=(
                    Level(
                        approvers=("alice",), notify=("ops-discord",), timeout=timedelta(minutes=10)
                    ),
                ),
                on_timeout=TimeoutOutcome.EXPIRE,
            ),
            Policy(
                name="lenient",
                match=Match(actions=("docs.*",)),
                levels=(
                    Level(
                        approvers=("alice", "bob"), notify=("web",), timeout=timedelta(minutes=10)
                    ),
                ),
                on_timeout=TimeoutOutcome.APPROVE,
            ),
            Policy(
                name="default",
                levels=(
                    Level(
                        approvers=("alice", "bob"),
                        notify=("ops-slack",),
                        timeout=timedelta(minutes=30),
                    ),
                ),
                min_timeout=timedelta(minutes=1),
                max_timeout=timedelta(hours=2),
            ),
        )
    )


@pytest.fixture
def rules() -> Rules:
    return Rules(policies=make_policies(), directory=make_directory())


def allowing_edits(rules: Rules) -> Rules:
    """``rules`` with every policy letting approvers edit params (``edits: allowed``)."""
    policies = tuple(replace(policy, edits=EditsRule.ALLOWED) for policy in rules.policies.policies)
    return Rules(PolicySet(policies), rules.directory)


def editable_rules() -> Rules:
    """The standard rules with two policies that let approvers edit params in front:
    ``scale`` (``scale.*``, one approval) and ``scale-twice`` (``rescale.*``, quorum 2),
    both approved by alice, bob or dave and shown in the web inbox."""
    level = Level(approvers=("alice", "bob", "dave"), notify=("web",), timeout=timedelta(hours=1))
    editable = (
        Policy(
            name="scale",
            match=Match(actions=("scale.*",)),
            levels=(level,),
            edits=EditsRule.ALLOWED,
        ),
        Policy(
            name="scale-twice",
            match=Match(actions=("rescale.*",)),
            levels=(level,),
            quorum=2,
            edits=EditsRule.ALLOWED,
        ),
    )
    policies = make_policies()
    return Rules(PolicySet(editable + policies.policies), make_directory())


def build_test_runtime(
    store: SqlStore,
    clock: Clock,
    rules: Rules,
    *,
    adapters: Mapping[str, Adapter] | None = None,
    web_inbox: bool = False,
    **options: Any,
) -> Runtime:
    """The runtime ``build_runtime`` makes, on ``store`` and ``clock`` with ``rules``, and
    with ``adapters`` (none: cards to other platforms wait in the outbox). Not started: a
    test starts what it needs, or calls ``runtime.start()`` for the whole application."""
    return build_runtime(
        default_config(),
        AppOptions(
            clock=clock,
            store=store,
            rules=rules,
            adapters=dict(adapters or {}),
            web_inbox=web_inbox,
            **options,
        ),
    )


def deliver_through(runtime: Runtime, adapters: Mapping[str, Adapter]) -> OutboxDispatcher:
    """The runtime's outbox dispatcher, delivering to each platform through ``adapters``."""
    for platform, adapter in adapters.items():
        runtime.dispatcher.use_adapter(platform, adapter)
    return runtime.dispatcher


@pytest.fixture
def runtime(store: SqlStore, rules: Rules, clock: ManualClock) -> Runtime:
    return build_test_runtime(store, clock, rules)


@pytest.fixture
def service(runtime: Runtime) -> ApprovalService:
    return runtime.service


@pytest.fixture
def sqlite_runtime(sqlite_store: SqlStore, rules: Rules, clock: ManualClock) -> Runtime:
    return build_test_runtime(sqlite_store, clock, rules)


@pytest.fixture
def sqlite_service(sqlite_runtime: Runtime) -> ApprovalService:
    return sqlite_runtime.service
