"""The documentation holds no dead link and quotes no command that does not exist.

Every relative link in README.md, CONTRIBUTING.md, examples/README.md and docs/ names a
file of the checkout (and, with ``#anchor``, a heading of it); every ``signoff ...``
command quoted in them, in a code span or a shell block, is one the CLI accepts: its
subcommands exist and its options are that subcommand's; every ``make TARGET`` is a target
of the Makefile.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from bot.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "examples" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.DOTALL | re.MULTILINE)
ANY_BLOCK = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
COMMAND_START = re.compile(r"(?:^|\s)((?:\.venv/bin/)?signoff(?:\s|$).*)")
SHELL_BREAK = re.compile(r"\s(?:\||&&|;|#|>)\s.*$")
NOT_COMMANDS = {
    "signoff singleton locks",  # the application_name of a connection in pg_stat_activity
}


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def anchors_of(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lowercase, punctuation dropped, spaces as -."""
    found = set()
    for line in ANY_BLOCK.sub("", page.read_text(encoding="utf-8")).splitlines():
        if heading := re.match(r"#{1,6} (.+)", line):
            text = heading.group(1).strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def links_in(page: Path) -> list[str]:
    text = SHELL_BLOCK.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_names_a_file_and_heading_that_exist(page):
    problems = []
    for target in links_in(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
            problems.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert problems == [], f"{page_id(page)}: {problems}"


def commands_in(page: Path) -> list[str]:
    """The ``signoff`` command lines a page quotes: in code spans, and in shell blocks
    (continuation lines joined, the shell's own syntax after the command cut off)."""
    text = page.read_text(encoding="utf-8")
    quoted = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            quoted.append(line)
    quoted += CODE_SPAN.findall(SHELL_BLOCK.sub("", text))
    commands = []
    for snippet in quoted:
        if found := COMMAND_START.search(snippet):
            command = SHELL_BREAK.sub("", found.group(1)).strip()
            if command not in NOT_COMMANDS:
                commands.append(command)
    return commands


def subcommands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def problem_with(command: str) -> str | None:
    """Why the CLI would not accept ``command`` as the docs write it (placeholders such as
    ``NAME``, ``[--ttl 15m]`` and ``k=v...`` allowed), or None."""
    try:
        words = shlex.split(command.replace("[", " ").replace("]", " ").replace("...", " "))
    except ValueError as exc:
        return f"cannot split it: {exc}"
    parser = _parser()
    words = words[1:]  # signoff (or .venv/bin/signoff)
    while words and (choices := subcommands_of(parser)):
        names = words[0].split("|")  # `audit verify|export` names two
        if not all(name in choices for name in names):
            if words[0].startswith("-"):
                break
            return f"{words[0]!r} is not a subcommand (choices: {', '.join(choices)})"
        parser = choices[names[0]]
        words = words[1:]
    known = parser._option_string_actions
    for word in words:
        if word == "--":
            break
        option = word.split("=", 1)[0]
        if option.startswith("-") and option not in known:
            return f"{option} is not an option of {parser.prog!r}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_quoted_signoff_command_is_one_the_cli_accepts(page):
    commands = commands_in(page)
    problems = [f"{command}: {why}" for command in commands if (why := problem_with(command))]
    assert problems == [], f"{page_id(page)}: {problems}"


def test_the_pages_quote_commands_at_all():
    # The checks above would pass on pages they cannot read: make sure they see commands.
    quoted = [command for page in PAGES for command in commands_in(page)]
    assert len(quoted) > 40
    assert any(command.startswith("signoff db copy --to") for command in quoted)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_make_target_quoted_exists(page):
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    text = page.read_text(encoding="utf-8")
    in_code = CODE_SPAN.findall(SHELL_BLOCK.sub("", text)) + SHELL_BLOCK.findall(text)
    quoted = {target for code in in_code for target in re.findall(r"\bmake ([a-z][\w-]*)", code)}
    assert quoted - targets == set(), f"{page_id(page)} quotes make targets that do not exist"
