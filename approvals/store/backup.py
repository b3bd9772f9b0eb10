"""A consistent copy of a live SQLite database, taken with SQLite's online backup API.

signoff runs SQLite in WAL mode, where a reader sees one committed state and never blocks a
writer. The backup copies every page in one step, inside one read transaction: the copy
is the database as it was when the backup began, however busy signoff is meanwhile, and
signoff keeps writing the whole time. (Copying in several steps would start over each
time a write changed a page already copied, and might never finish under steady load.)
The copy is a complete signoff database, audit chain included: point ``database.url`` at
it to run from it.

PostgreSQL has its own tools for this (``pg_dump``); :func:`backup_sqlite` refuses any
other database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url


class BackupError(Exception):
    """The copy could not be made; nothing is left at the target."""


@dataclass(frozen=True)
class BackupResult:
    """What a backup wrote: where (an absolute path), and how many pages and bytes."""

    target: Path
    pages: int
    size: int


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` database URL; ``None`` for any other database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def backup_sqlite(url: str, target: Path) -> BackupResult:
    """Copy the SQLite database at ``url`` to the new file ``target`` (blocking: call it
    in a thread). The target must not exist; on failure nothing is left there.

    Raises:
        BackupError: not a SQLite file database, no such database, the target exists or
            cannot be written.
    """
    source_path = sqlite_path(url)
    if source_path is None:
        raise BackupError("only a SQLite database (sqlite:///FILE) can be copied this way")
    if target.exists():
        raise BackupError(f"{target}: exists; choose a new file")
    if not source_path.is_file():
        raise BackupError(f"{source_path}: no such database")
    try:
        source = sqlite3.connect(source_path, timeout=30.0)
    except sqlite3.Error as exc:
        raise BackupError(f"{source_path}: cannot open: {exc}") from exc
    try:
        try:
            destination = sqlite3.connect(target)
        except sqlite3.Error as exc:
            raise BackupError(f"{target}: cannot write: {exc}") from exc
        try:
            source.backup(destination)  # every page, in one read transaction
            pages = int(destination.execute("PRAGMA page_count").fetchone()[0])
        finally:
            destination.close()
    except (sqlite3.Error, OSError) as exc:
        target.unlink(missing_ok=True)
        raise BackupError(f"{target}: the copy failed: {exc}") from exc
    finally:
        source.close()
    return BackupResult(target.resolve(), pages, target.stat().st_size)
