"""Reading YAML safely: duplicate keys, tags, aliases, syntax errors and line numbers."""

from __future__ import annotations

import time

import pytest

from config.yaml_document import MAX_NODES, DocumentError, parse_document
from tests.config.helpers import MINIMAL, load, problem_at, problems


def test_duplicate_key_names_both_lines() -> None:
    text = MINIMAL + "server:\n  listen: 127.0.0.1:9000\n  listen: 127.0.0.1:9001\n"

    found = problems(text)

    problem = problem_at(found, "server.listen")
    assert problem.line == 9
    assert "line 8" in problem.message


def test_duplicate_top_level_section_is_reported() -> None:
    found = problems(MINIMAL + "people:\n  bob: {}\n")

    problem = problem_at(found, "people")
    assert (problem.line, "line 2" in problem.message) == (7, True)


def test_python_tag_is_reported_and_never_run() -> None:
    marker = "signoff-config-test-never-created"
    text = MINIMAL.replace(
        "alice: {}", f'alice: {{slack: !!python/object/apply:os.system ["touch {marker}"]}}'
    )

    (problem,) = problems(text)

    assert problem.key_path == "people.alice.slack"
    assert problem.line == 3
    assert "!!python/object/apply:os.system" in problem.message


@pytest.mark.parametrize(
    "tagged", ["!!python/name:os.system ''", "!custom value", "!!binary aGk=", "!!set {a: null}"]
)
def test_any_tag_beyond_plain_values_is_an_error(tagged: str) -> None:
    found = problems(MINIMAL + f"agents:\n  bot: {{allow: [{tagged}]}}\n")

    problem = problem_at(found, "agents.bot.allow[0]")
    assert problem.line == 8
    assert "unsupported YAML tag" in problem.message


def test_standard_tags_for_plain_values_are_fine() -> None:
    loaded = load(MINIMAL.replace("alice: {}", "alice: {discord: !!str 200001}"))

    assert loaded.settings.people["alice"].discord == "200001"


def test_alias_bomb_stops_quickly() -> None:
    lines = ["version: 1", 'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    started = time.monotonic()

    (problem,) = problems("\n".join(lines) + "\n")

    assert time.monotonic() - started < 2
    assert f"more than {MAX_NODES} values" in problem.message
    assert problem.line is not None


def test_anchors_and_aliases_are_allowed_and_placed_at_their_use() -> None:
    text = (
        "version: 1\n"
        "people:\n"
        "  alice: {}\n"
        "policies:\n"
        "  - name: default\n"
        "    levels:\n"
        "      - &standard {approvers: [alice], notify: [web], timeout: 15m}\n"
        "      - *standard\n"
        "      - *standard\n"
    )

    loaded = load(text)

    assert len(loaded.policy_set().policies[0].levels) == 3


def test_problem_inside_an_alias_points_at_the_alias() -> None:
    text = (
        "version: 1\n"
        "people:\n"
        "  alice: {}\n"
        "policies:\n"
        "  - name: default\n"
        "    levels:\n"
        "      - {approvers: [alice], notify: [web], timeout: 15m}\n"
        "      - &broken {approvers: [alice], notify: [web], timeout: soon}\n"
        "      - *broken\n"
    )

    found = problems(text)

    assert [(p.line, p.key_path) for p in found] == [
        (8, "policies[0].levels[1].timeout"),
        (9, "policies[0].levels[2].timeout"),
    ]


def test_merge_keys_fill_in_what_the_mapping_does_not_set() -> None:
    text = (
        "version: 1\n"
        "people:\n"
        "  alice: {}\n"
        "x-defaults: &defaults {notify: [web], timeout: 15m}\n"
        "policies:\n"
        "  - name: default\n"
        "    levels:\n"
        "      - <<: *defaults\n"
        "        approvers: [alice]\n"
        "        timeout: 1h\n"
    )

    found = problems(text)  # x-defaults is not a known key

    assert [(p.line, p.key_path) for p in found] == [(4, "x-defaults")]
    document = parse_document(text, {})
    level = document.data["policies"][0]["levels"][0]
    assert level == {"notify": ["web"], "timeout": "1h", "approvers": ["alice"]}
    assert document.line_for(("policies", 0, "levels", 0, "timeout")) == 10
    assert document.line_for(("policies", 0, "levels", 0, "notify")) == 8


def test_alias_that_contains_itself_is_an_error() -> None:
    document = parse_document("a: &loop [1, *loop]\n", {})

    assert [issue.message for issue in document.issues] == [
        "an alias refers to a list or mapping that contains it"
    ]


def test_undefined_alias_is_a_syntax_error_with_line() -> None:
    (problem,) = problems(MINIMAL + "agents: *nowhere\n")

    assert problem.line == 7
    assert "undefined alias" in problem.message


def test_syntax_error_names_the_line() -> None:
    (problem,) = problems("version: 1\npeople:\n  alice: {\n  bob: [\n")

    assert problem.line is not None
    assert problem.message.startswith("invalid YAML")


def test_bad_indentation_names_the_line() -> None:
    (problem,) = problems("version: 1\npeople:\n  alice: {}\n bob: {}\n")

    assert problem.line == 4


def test_tab_character_is_a_syntax_error() -> None:
    (problem,) = problems("version: 1\npeople:\n\talice: {}\n")

    assert problem.line == 3


def test_more_than_one_document_is_an_error() -> None:
    (problem,) = problems(MINIMAL + "---\nversion: 1\n")

    assert problem.line == 7
    assert "single document" in problem.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file_is_an_error(text: str) -> None:
    (problem,) = problems(text)

    assert problem.line == 1
    assert "empty" in problem.message


@pytest.mark.parametrize("text", ["- version: 1\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    (problem,) = problems(text)

    assert problem.key_path == ""
    assert problem.line == 1
    assert "mapping" in problem.message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    (problem,) = problems("version: " + "[" * 5000 + "]" * 5000 + "\n")

    assert "nest" in problem.message


def test_moderate_nesting_beyond_the_limit_is_reported_with_a_path() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document("a: " + "[" * 100 + "]" * 100 + "\n", {})

    assert caught.value.issue.line == 1


def test_non_text_mapping_key_is_an_error() -> None:
    found = problems(MINIMAL + "agents:\n  ? [a, b]\n  : {}\n")

    assert "mapping keys must be plain text" in problem_at(found, "agents").message


def test_keys_keep_their_written_text() -> None:
    loaded = load(MINIMAL.replace("alice: {}", "alice: {}\n  no: {}\n  on: {}"))

    assert set(loaded.settings.people) == {"alice", "no", "on"}


def test_every_key_and_item_has_its_line() -> None:
    text = (
        "version: 1\n"  # 1
        "people:\n"  # 2
        "  alice:\n"  # 3
        "    slack: U0ALICE\n"  # 4
        "policies:\n"  # 5
        "  - name: default\n"  # 6
        "    levels:\n"  # 7
        "      - approvers:\n"  # 8
        "          - alice\n"  # 9
        "        notify: [web]\n"  # 10
        "        timeout: 30m\n"  # 11
    )

    document = parse_document(text, {})

    assert document.lines[()] == 1
    assert document.lines[("people",)] == 2
    assert document.lines[("people", "alice")] == 3
    assert document.lines[("people", "alice", "slack")] == 4
    assert document.lines[("policies", 0)] == 6
    assert document.lines[("policies", 0, "levels", 0)] == 8
    assert document.lines[("policies", 0, "levels", 0, "approvers")] == 8
    assert document.lines[("policies", 0, "levels", 0, "approvers", 0)] == 9
    assert document.lines[("policies", 0, "levels", 0, "timeout")] == 11
    assert document.line_for(("policies", 0, "levels", 0, "remind_every")) == 8


def test_missing_required_key_points_at_its_parent() -> None:
    text = (
        "version: 1\n"
        "people:\n"
        "  alice: {}\n"
        "policies:\n"
        "  - name: default\n"
        "    levels:\n"
        "      - approvers: [alice]\n"
        "        notify: [web]\n"
    )

    (problem,) = problems(text)

    assert (problem.line, problem.key_path) == (7, "policies[0].levels[0].timeout")
    assert "required" in problem.message


def test_missing_top_level_key_points_at_the_first_line_of_the_document() -> None:
    found = problems("# comment\n\npeople:\n  alice: {}\n")

    assert {(p.line, p.key_path) for p in found} == {(3, "version"), (3, "policies")}
