"""Every file in tests/config/broken/ is refused, at the line and key path its header names.

Each file starts with ``# expect-line: N`` and ``# expect-key: key.path``. The CLI tests
run ``signoff config check`` over the same files, so the header format is fixed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import ConfigError, load_config

BROKEN = Path(__file__).parent / "broken"
BROKEN_FILES = sorted(BROKEN.glob("*.yaml"))
_HEADER = re.compile(r"# expect-line: (?P<line>\d+)\n# expect-key: (?P<key>\S+)\n")


def expectation(path: Path) -> tuple[int, str]:
    """The line and key path a broken file's header says the error names."""
    match = _HEADER.match(path.read_text(encoding="utf-8"))
    assert match, f"{path.name} must start with '# expect-line: N' and '# expect-key: path'"
    return int(match.group("line")), match.group("key")


def test_there_are_enough_broken_files() -> None:
    assert len(BROKEN_FILES) >= 12


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda path: path.stem)
def test_broken_file_is_refused_at_the_expected_line_and_key(path: Path) -> None:
    line, key_path = expectation(path)

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    found = [(problem.line, problem.key_path) for problem in caught.value.problems]
    assert (line, key_path) in found, str(caught.value)
    rendered = str(caught.value)
    assert f"{path}:{line}: {key_path}: " in rendered


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda path: path.stem)
def test_broken_file_fails_the_same_way_with_the_real_environment(path: Path) -> None:
    """The CLI reads the process environment; no broken file depends on it being empty."""
    line, key_path = expectation(path)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert (line, key_path) in [(p.line, p.key_path) for p in caught.value.problems]


def test_python_tag_file_creates_nothing() -> None:
    with pytest.raises(ConfigError):
        load_config(BROKEN / "python_tag.yaml", environ={})

    assert not Path("/tmp/signoff-pwned").exists()
