"""The dependency rule and the store rule, checked by walking the source tree's syntax.

bot -> adapters -> approvals, bot -> config -> approvals, adapters -> config. The core
imports no chat SDK, no web framework, and nothing from bot/, adapters/ or config/; an
adapter never imports another adapter.

``approvals/store/`` is the only code that speaks SQL: everything else reads and writes
through its functions, builds no statement and touches no connection (the schema,
``approvals/tables.py``, and its migrations excepted; catching sqlalchemy's exceptions is
fine).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAT_AND_WEB = {
    "slack_bolt",
    "slack_sdk",
    "telegram",
    "discord",
    "fastapi",
    "starlette",
    "uvicorn",
    "aiohttp",
    "mcp",
}
FORBIDDEN = {
    "approvals": {"bot", "adapters", "config", *CHAT_AND_WEB},
    "config": {"bot", "adapters", *CHAT_AND_WEB},
    "adapters": {"bot"},
}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_dependency_rule(package):
    files = sources(package)
    assert files, f"{package}/ has no sources"
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert broken == []


SHARED_BY_ADAPTERS = {"pacing"}
"""Modules at the top of ``adapters/`` that every adapter may use (send windows)."""


def test_adapters_do_not_import_each_other():
    broken = []
    for path in sources("adapters"):
        own = path.relative_to(ROOT / "adapters").parts[0].removesuffix(".py")
        for name in imported_modules(path):
            parts = name.split(".")
            if (
                parts[0] == "adapters"
                and len(parts) > 1
                and parts[1] not in (own, *SHARED_BY_ADAPTERS)
            ):
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert broken == []


def test_what_adapters_share_is_no_adapter():
    for name in SHARED_BY_ADAPTERS:
        assert (ROOT / "adapters" / f"{name}.py").is_file()
        assert not (ROOT / "adapters" / name).is_dir()


ADAPTERS = sorted(path.parent.name for path in (ROOT / "adapters").glob("*/__init__.py"))
BEHIND_THE_PORT = ("approvals.service", "approvals.store")
"""The core's insides: its rules and judging, and its database."""
STORE_CLASSES = {"ApprovalService", "SqlStore", "AccessStore"}


def imported_names(path: Path) -> list[str]:
    """Every name imported with ``from module import name``, as ``module.name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    ]


def test_every_adapter_is_checked():
    assert {"slack", "telegram", "discord", "web"} <= set(ADAPTERS)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_reach_the_core_only_through_the_port(adapter):
    """An adapter hands clicks to the sink it is given and reads through the read-only
    queries it is given: it never imports the service (its rules, its judging), the store,
    or the store of sign-ins."""
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(f"adapters/{adapter}")
        for name in imported_modules(path)
        if any(name == hidden or name.startswith(hidden + ".") for hidden in BEHIND_THE_PORT)
    ] + [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(f"adapters/{adapter}")
        for name in imported_names(path)
        if name.rsplit(".", 1)[1] in STORE_CLASSES
    ]
    assert broken == []


def test_the_walker_sees_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import slack_bolt.app\nfrom bot.cli import run\nfrom . import sibling\n")
    assert imported_modules(sample) == ["slack_bolt.app", "bot.cli"]
    assert imported_names(sample) == ["bot.cli.run"]


# --- SQL lives in the store ------------------------------------------------------------------

SQL_FREE_PACKAGES = ("approvals", "bot", "adapters", "config")
SQL_HOMES = ("approvals/store/", "approvals/migrations/", "approvals/tables.py")
"""The store speaks SQL; the schema and its migrations describe it."""


DATABASE_LIBRARIES = {"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"}


def sql_uses(path: Path) -> list[str]:
    """What in ``path`` speaks SQL or holds a connection, in line order: an import of a
    database library (sqlalchemy, a driver) other than sqlalchemy's exception classes
    (``from sqlalchemy.exc import ...``), a ``.conn`` or a ``.begin_nested``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        use = None
        if isinstance(node, ast.Import):
            modules = [
                alias.name for alias in node.names if alias.name.split(".")[0] in DATABASE_LIBRARIES
            ]
            if modules:
                use = f"import {', '.join(modules)}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            exceptions_only = node.module == "sqlalchemy.exc" or (
                node.module == "sqlalchemy" and set(names) == {"exc"}
            )
            if node.module.split(".")[0] in DATABASE_LIBRARIES and not exceptions_only:
                use = f"from {node.module} import {', '.join(names)}"
        elif isinstance(node, ast.Attribute) and node.attr in ("conn", "begin_nested"):
            use = f".{node.attr}"
        if use is not None:
            assert isinstance(node, ast.stmt | ast.expr)  # imports and attributes have a line
            found.append((node.lineno, node.col_offset, use))
    return [f"line {line}: {use}" for line, _, use in sorted(found)]


def outside_the_store(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return not any(relative == home or relative.startswith(home) for home in SQL_HOMES)


def test_only_the_store_speaks_sql():
    files = [
        path
        for package in SQL_FREE_PACKAGES
        for path in sources(package)
        if outside_the_store(path)
    ]
    assert any(path.name == "service.py" for path in files)
    broken = [f"{path.relative_to(ROOT)} {use}" for path in files for use in sql_uses(path)]
    assert broken == []


def test_the_sql_walker_sees_statements_and_connections(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import sqlalchemy\n"
        "from sqlalchemy import select, exc\n"
        "import asyncpg\n"
        "from sqlalchemy.exc import IntegrityError\n"
        "from sqlalchemy import exc\n"
        "def write(tx):\n"
        "    tx.conn.execute(select(1))\n"
        "    tx.conn.begin_nested()\n"
    )
    assert sql_uses(sample) == [
        "line 1: import sqlalchemy",
        "line 2: from sqlalchemy import select, exc",
        "line 3: import asyncpg",
        "line 7: .conn",
        "line 8: .begin_nested",
        "line 8: .conn",
    ]
    assert not outside_the_store(ROOT / "approvals" / "store" / "database.py")
    assert not outside_the_store(ROOT / "approvals" / "tables.py")
    assert outside_the_store(ROOT / "approvals" / "service.py")
