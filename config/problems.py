"""What a config problem looks like: where it is (file, line, key path) and what is wrong."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]
"""A position in the config document: mapping keys and list indexes, from the root."""

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@-]+")


def format_key_path(path: KeyPath) -> str:
    """Write a key path the way problems show it: ``policies[0].levels[1].timeout``.

    Keys that contain dots, spaces or other punctuation are quoted (``params["db.name"]``)
    so the path stays unambiguous. The document root is the empty string.
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            text += f'["{escaped}"]'
    return text


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file.

    Attributes:
        source: the file path as given to the loader, or a name such as
            ``<built-in default>``.
        line: the 1-based line the problem is on, or ``None`` when no line applies (the
            file could not be read).
        key_path: where in the document, such as ``policies[0].levels[1].timeout`` or
            ``people.alice.slack``; empty for the document as a whole.
        message: what is wrong and what was expected, for a human.
    """

    source: str
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        location = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.key_path:
            return f"{location}: {self.key_path}: {self.message}"
        return f"{location}: {self.message}"


class ConfigError(Exception):
    """A config file cannot be used. Carries every problem found, in file order.

    Attributes:
        problems: what is wrong, one entry per problem.
    """

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = sorted(
            problems, key=lambda problem: (problem.line or 0, problem.key_path)
        )
        super().__init__("\n".join(str(problem) for problem in self.problems))
