"""Fixtures for the reliability suite (faults, load and bad input): see RELIABILITY.md."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.reliability.crash import migrated_database


@pytest.fixture(scope="session")
def crash_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A migrated SQLite database with an agent key (path, key), copied by each process run."""
    path = tmp_path_factory.mktemp("crash-template") / "template.db"
    key = asyncio.run(migrated_database(path))
    return path, key
