"""`signoff db backup`: a consistent copy of a live SQLite database, its audit chain verified."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from approvals.clock import ManualClock
from approvals.model import CreateCommand
from approvals.outcomes import Created
from approvals.service import Rules
from approvals.store import SqlStore
from approvals.store.backup import BackupError, backup_sqlite
from approvals.tables import AUDIT, REQUESTS
from tests.cli import run_signoff
from tests.waiting import wait_for
from tests.world import build_test_runtime, make_directory, make_policies


async def counts(store: SqlStore) -> tuple[int, int]:
    """(requests, audit entries) in ``store``."""
    async with store.read() as reader:
        requests = (
            await reader.conn.execute(select(func.count()).select_from(REQUESTS))
        ).scalar_one()
        entries = (await reader.conn.execute(select(func.count()).select_from(AUDIT))).scalar_one()
    return int(requests), int(entries)


async def test_a_backup_under_live_traffic_is_one_committed_state(
    sqlite_store: SqlStore, clock: ManualClock, tmp_path: Path
) -> None:
    service = build_test_runtime(
        sqlite_store, clock, Rules(policies=make_policies(), directory=make_directory())
    ).service
    created: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            outcome = await service.create(
                CreateCommand(
                    agent="deploy-bot",
                    action="deploy.web",
                    title="Deploy",
                    params={"n": len(created)},
                )
            )
            assert isinstance(outcome, Created)
            created.append(outcome.request.id)

    def made(count: int) -> Callable[[], Awaitable[bool]]:
        async def enough() -> bool:
            return len(created) >= count

        return enough

    writing = asyncio.create_task(traffic())
    await wait_for(made(50))
    before = len(created)
    target = tmp_path / "backup.db"
    result = await asyncio.to_thread(backup_sqlite, sqlite_store.url, target)
    await wait_for(made(before + 50))  # signoff kept writing meanwhile
    stop.set()
    await writing

    copy = SqlStore(f"sqlite:///{result.target}")
    try:
        verification = await copy.verify_audit()
        requests, entries = await counts(copy)
    finally:
        await copy.close()
    assert verification.ok, verification.broken
    assert before <= requests < len(created)
    assert entries == requests  # one "created" entry per request: nothing half-copied
    assert result.size == target.stat().st_size > 0


def test_the_target_must_be_new_and_the_source_sqlite(tmp_path: Path) -> None:
    existing = tmp_path / "exists.db"
    existing.write_bytes(b"keep me")
    with pytest.raises(BackupError, match="exists"):
        backup_sqlite(f"sqlite:///{tmp_path / 'missing.db'}", existing)
    with pytest.raises(BackupError, match="no such database"):
        backup_sqlite(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "new.db")
    with pytest.raises(BackupError, match="only a SQLite database"):
        backup_sqlite("postgresql://postgres@127.0.0.1:5432/test", tmp_path / "new.db")
    assert existing.read_bytes() == b"keep me"
    assert not (tmp_path / "new.db").exists()


def signoff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_signoff(*args, cwd=cwd)


def config_file(directory: Path, url: str) -> Path:
    path = directory / "signoff.yaml"
    path.write_text(
        f'version: 1\ndatabase: {{url: "{url}"}}\npolicies:\n'
        "  - name: default\n    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n"
        "people:\n  alice: {}\n",
        encoding="utf-8",
    )
    return path


def test_the_command_copies_and_verifies_and_never_overwrites(tmp_path: Path) -> None:
    config = config_file(tmp_path, f"sqlite:///{tmp_path / 'live.db'}")
    assert signoff("db", "upgrade", "--config", str(config), cwd=tmp_path).returncode == 0
    target = tmp_path / "copy.db"

    made = signoff("db", "backup", "--config", str(config), str(target), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"wrote {target}: ")
    assert "chain verified" in made.stdout

    again = signoff("db", "backup", "--config", str(config), str(target), cwd=tmp_path)
    assert again.returncode == 2
    assert f"{target}: exists" in again.stderr


def test_on_postgresql_the_command_points_to_pg_dump(tmp_path: Path) -> None:
    config = config_file(tmp_path, "postgresql://signoff@db.internal:5432/signoff")
    refused = signoff("db", "backup", "--config", str(config), str(tmp_path / "x"), cwd=tmp_path)
    assert refused.returncode == 2
    assert "pg_dump" in refused.stderr
    assert not (tmp_path / "x").exists()
