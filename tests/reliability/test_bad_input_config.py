"""B9: hostile and broken config files are refused with file:line and key path; nothing runs.

The documents of ``corpus/hostile_yaml.yaml`` (Python object tags aimed at a sentinel file,
self-referring aliases, absurd nesting, tabs, NUL, two documents, wrong types, people and
channels nobody configured) and the broken files of tests/config/broken/ it names are read
as ``signoff serve`` reads its config; one is also checked through the real
``signoff config check`` command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_config
from tests.config.test_broken_files import BROKEN, expectation
from tests.reliability.corpus import cases

BASE = (
    "people: {alice: {}}\n"
    "policies:\n"
    "  - name: default\n"
    "    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n"
)
SIGNOFF = Path(sys.executable).with_name("signoff")


def document(entry: dict[str, Any], sentinel: Path) -> str:
    deep = int(entry.get("deep", 0))
    return (
        entry["yaml"]
        .replace("{sentinel}", str(sentinel))
        .replace("{base}", BASE)
        .replace("{deep}", "[" * deep + "]" * deep)
    )


@pytest.mark.parametrize("entry", cases("hostile_yaml.yaml", "documents"))
def test_B9_a_hostile_config_is_refused_at_its_line_and_key_and_runs_nothing(
    tmp_path: Path, entry: dict[str, Any]
):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "hostile.yaml"
    path.write_text(document(entry, sentinel), encoding="utf-8")

    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})

    expect = entry["expect"]
    found = [p for p in refused.value.problems if p.line == expect["line"]]
    assert found, str(refused.value)
    if expect["key"] is not None:
        assert expect["key"] in [str(p.key_path) for p in found], str(refused.value)
        assert f"{path}:{expect['line']}: {expect['key']}: " in str(refused.value)
    else:
        assert f"{path}:{expect['line']}: " in str(refused.value)
    assert expect["says"] in str(refused.value)
    assert not sentinel.exists()


@pytest.mark.parametrize("entry", cases("hostile_yaml.yaml", "files"))
def test_B9_the_broken_config_files_are_refused_at_their_line_and_key(entry: dict[str, Any]):
    path = BROKEN / entry["file"]
    line, key_path = expectation(path)

    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={"SLACK_BOT_TOKEN": "x", "SLACK_SIGNING_SECRET": "x"})

    assert f"{path}:{line}: {key_path}: " in str(refused.value)


def test_B9_signoff_config_check_refuses_a_python_tag_and_runs_nothing(tmp_path: Path):
    [entry] = [
        e.values[0]
        for e in cases("hostile_yaml.yaml", "documents")
        if e.id == "python-object-apply"
    ]
    sentinel = tmp_path / "pwned"
    path = tmp_path / "hostile.yaml"
    path.write_text(document(entry, sentinel), encoding="utf-8")

    checked = subprocess.run(
        [str(SIGNOFF), "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert f"{path}:2: policies: unsupported YAML tag" in checked.stdout + checked.stderr
    assert not sentinel.exists()
