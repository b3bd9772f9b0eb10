"""The ``signoff`` command line, run as a real process: config check, db upgrade, audit."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.cli import SIGNOFF, run_signoff
from tests.config.helpers import EXAMPLE_ENVIRON

ROOT = Path(__file__).resolve().parents[2]
BROKEN = sorted((ROOT / "tests" / "config" / "broken").glob("*.yaml"))


def signoff(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return run_signoff(*args, cwd=cwd, env=env)


def expectations(path: Path) -> tuple[int, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    line = int(lines[0].removeprefix("# expect-line:").strip())
    key = lines[1].removeprefix("# expect-key:").strip()
    return line, key


def test_example_config_checks_clean():
    result = signoff("config", "check", str(ROOT / "config" / "example.yaml"), env=EXAMPLE_ENVIRON)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "discord, slack, telegram" in result.stdout


def test_example_config_without_its_secrets_names_each_variable():
    env = dict.fromkeys(EXAMPLE_ENVIRON, "")
    clean = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENVIRON}
    result = subprocess.run(
        [str(SIGNOFF), "config", "check", str(ROOT / "config" / "example.yaml")],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    for name in env:
        assert name in result.stderr


def test_there_are_at_least_ten_broken_configs():
    assert len(BROKEN) >= 10


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_config_exits_2_with_file_line_and_key(path):
    line, key = expectations(path)
    result = signoff("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}:{line}: {key}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_config_file_is_a_usage_error(tmp_path):
    result = signoff("config", "check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_version_is_the_project_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    result = signoff("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"signoff {project['version']}\n"


def test_db_upgrade_then_audit_verify_and_export(tmp_path):
    config = tmp_path / "signoff.yaml"
    db = tmp_path / "audit.db"
    config.write_text(
        "version: 1\n"
        f"database: {{url: 'sqlite:///{db}'}}\n"
        "people: {admin: {}}\n"
        "policies:\n"
        "  - name: default\n"
        "    levels: [{approvers: [admin], notify: [web], timeout: 30m}]\n",
        encoding="utf-8",
    )
    upgraded = signoff("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in upgraded.stdout

    _write_audit_entries(str(db), 3)
    verified = signoff("audit", "verify", "--config", str(config))
    assert verified.returncode == 0, verified.stderr
    assert "3 entries verified" in verified.stdout

    exported = signoff("audit", "export", "--config", str(config))
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [entry["seq"] for entry in lines] == [1, 2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    tampered = signoff("audit", "verify", "--config", str(config))
    assert tampered.returncode == 1
    assert "BROKEN at entry 2" in tampered.stderr

    out = tmp_path / "audit.jsonl"
    to_file = signoff("audit", "export", "--config", str(config), "--output", str(out))
    assert to_file.returncode == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_config_errors_stop_commands_that_need_config(tmp_path):
    broken = ROOT / "tests" / "config" / "broken" / "unknown_key.yaml"
    result = signoff("db", "upgrade", "--config", str(broken))
    assert result.returncode == 2
    assert str(broken) in result.stderr
    assert "Traceback" not in result.stderr


def test_signoff_config_env_variable_is_honoured(tmp_path):
    broken = ROOT / "tests" / "config" / "broken" / "unknown_key.yaml"
    result = signoff("audit", "verify", env={"SIGNOFF_CONFIG": str(broken)})
    assert result.returncode == 2
    assert str(broken) in result.stderr


def _write_audit_entries(db_path: str, count: int) -> None:
    import asyncio

    from approvals.clock import ManualClock
    from approvals.store import SqlStore, WriteTx

    async def write():
        store = SqlStore(f"sqlite:///{db_path}")
        try:
            for index in range(count):

                def append(tx: WriteTx, n: int = index) -> None:
                    tx.append_audit(
                        "config_loaded", at=ManualClock().now(), actor="test", data={"n": n}
                    )

                await store.run(append)
        finally:
            await store.close()

    asyncio.run(write())
