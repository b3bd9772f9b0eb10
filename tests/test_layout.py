"""The dependency rule, checked by walking every import in the source tree.

bot -> adapters -> approvals, bot -> config -> approvals, adapters -> config. The core
imports no chat SDK, no web framework, and nothing from bot/, adapters/ or config/; an
adapter never imports another adapter.
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
    names = []
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


def test_adapters_do_not_import_each_other():
    broken = []
    for path in sources("adapters"):
        own = path.relative_to(ROOT / "adapters").parts[0].removesuffix(".py")
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "adapters" and len(parts) > 1 and parts[1] not in (own, "contract"):
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert broken == []


NARROW_PORT_ADAPTERS = ("slack", "telegram", "discord")
"""Adapters that see the core only through ``approvals.ports.VoteSink`` (the web inbox is
moving there)."""
BEHIND_THE_PORT = ("approvals.service", "approvals.store")


@pytest.mark.parametrize("adapter", NARROW_PORT_ADAPTERS)
def test_chat_adapters_reach_the_core_only_through_the_port(adapter):
    """An adapter hands clicks to the sink it is given and reads cards through it: it never
    imports the service (its rules, its judging) or the store."""
    broken = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(f"adapters/{adapter}")
        for name in imported_modules(path)
        if any(name == hidden or name.startswith(hidden + ".") for hidden in BEHIND_THE_PORT)
    ]
    assert broken == []


def test_the_walker_sees_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import slack_bolt.app\nfrom bot.cli import run\nfrom . import sibling\n")
    assert imported_modules(sample) == ["slack_bolt.app", "bot.cli"]
