"""How problems read: file:line: key.path: message, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, ConfigProblem, load_config
from config.problems import format_key_path
from tests.config.helpers import MINIMAL, problems


def test_problem_reads_as_file_line_key_message() -> None:
    problem = ConfigProblem("signoff.yaml", 12, "policies[0].levels[1].timeout", "bad")

    assert str(problem) == "signoff.yaml:12: policies[0].levels[1].timeout: bad"


def test_problem_without_line_or_key_leaves_them_out() -> None:
    assert str(ConfigProblem("signoff.yaml", None, "", "cannot read")) == (
        "signoff.yaml: cannot read"
    )
    assert str(ConfigProblem("signoff.yaml", 1, "", "empty")) == "signoff.yaml:1: empty"


@pytest.mark.parametrize(
    ("path", "written"),
    [
        ((), ""),
        (("people", "alice", "slack"), "people.alice.slack"),
        (("policies", 0, "levels", 1, "timeout"), "policies[0].levels[1].timeout"),
        (("channels", "ops-slack"), "channels.ops-slack"),
        (("policies", 0, "match", "params", "db.name"), 'policies[0].match.params["db.name"]'),
    ],
)
def test_key_paths_are_written_like_the_document(path: tuple[str | int, ...], written: str) -> None:
    assert format_key_path(path) == written


def test_error_lists_problems_in_file_order() -> None:
    error = ConfigError(
        [ConfigProblem("f", 9, "b", "later"), ConfigProblem("f", 2, "a", "earlier")]
    )

    assert [problem.line for problem in error.problems] == [2, 9]
    assert str(error) == "f:2: a: earlier\nf:9: b: later"


def test_schema_problems_are_all_reported_in_one_pass() -> None:
    text = (
        MINIMAL + "server: {listen: nowhere, public_url: ftp://x}\nagents: {bot: {max_open: 0}}\n"
    )

    found = problems(text)

    assert {problem.key_path for problem in found} == {
        "server.listen",
        "server.public_url",
        "agents.bot.max_open",
    }


def test_messages_carry_no_pydantic_noise() -> None:
    text = MINIMAL + "agents: {bot: {max_open: many, allow: deploy}}\nserver: {port: 1}\n"

    for problem in problems(text):
        assert "pydantic" not in problem.message
        assert "type=" not in problem.message
        assert "http" not in problem.message
        assert "Input should" not in problem.message


def test_type_errors_say_what_was_expected_without_echoing_the_value() -> None:
    text = MINIMAL + "platforms:\n  discord: {bot_token: [hunter2]}\n"

    (problem,) = problems(text)

    assert "hunter2" not in problem.message


def test_unknown_key_suggests_the_closest_known_key() -> None:
    (problem,) = problems(MINIMAL + "platforms:\n  web: {enabeld: false}\n")

    assert problem.key_path == "platforms.web.enabeld"
    assert problem.line == 8
    assert "did you mean 'enabled'?" in problem.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing)

    (problem,) = caught.value.problems
    assert problem.source == str(missing)
    assert problem.line is None
    assert "cannot read" in problem.message


def test_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.problems[0].line == 2


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 1_100_000 + "\n")

    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_source_is_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "signoff.yaml").write_text(MINIMAL + "extra: 1\n")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError) as caught:
        load_config("signoff.yaml")

    assert str(caught.value.problems[0]).startswith("signoff.yaml:7: extra: unknown key")
