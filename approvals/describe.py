"""A policy's ``describe`` line: one sentence saying what a request will do, from its params.

An approver reads the first line of a card and decides; "Policy: default" and a title the
agent wrote tell them little. An admin writes the sentence once per policy, as a template
over the request::

    describe: "Pay {params.amount.value} {params.amount.currency} to {params.payee.name}"

Placeholders name ``action``, ``agent``, ``title``, ``requested_by`` or a path into
``params`` (dotted keys; a number indexes a list: ``{params.items.0.sku}``); ``{{`` and
``}}`` are literal braces. A value the request lacks shows as ``(no params.payee.name)``,
so a missing part is seen, never silently dropped. Values are agent text: each is put on
one line and cut to a length, and every platform escapes and reveals invisible characters
as it does for all agent text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from approvals.text import cut

ROOTS = ("action", "agent", "title", "requested_by", "params")
"""What a placeholder may start with."""
MAX_VALUE_LENGTH = 120
"""The longest a single placeholder's value is shown."""
MAX_LINE_LENGTH = 300
"""The longest a whole describe line is shown."""
MAX_TEMPLATE_LENGTH = 500
"""The longest template config accepts."""

_PATH_PART = re.compile(r"[A-Za-z0-9_\-]+")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


@dataclass(frozen=True)
class Placeholder:
    """``{root.path...}`` in a template."""

    root: str
    path: tuple[str, ...]

    @property
    def name(self) -> str:
        return ".".join((self.root, *self.path))


@dataclass(frozen=True)
class DescribeTemplate:
    """A parsed ``describe`` template: literal text and placeholders, in order."""

    source: str
    parts: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, source: str) -> DescribeTemplate:
        """Read a template.

        Raises:
            ValueError: with what is wrong and where (an unclosed or stray brace, an empty
                or unknown placeholder, a path with odd characters, a template too long).
        """
        if not source.strip():
            raise ValueError("must not be empty")
        if len(source) > MAX_TEMPLATE_LENGTH:
            raise ValueError(f"at most {MAX_TEMPLATE_LENGTH} characters, not {len(source)}")
        parts: list[str | Placeholder] = []
        literal: list[str] = []
        index = 0
        while index < len(source):
            char = source[index]
            if source.startswith("{{", index) or source.startswith("}}", index):
                literal.append(char)
                index += 2
            elif char == "}":
                raise ValueError(f"a '}}' at character {index + 1} closes nothing (write '}}}}')")
            elif char == "{":
                end = source.find("}", index)
                if end == -1:
                    raise ValueError(f"the '{{' at character {index + 1} is never closed")
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(_placeholder(source[index + 1 : end], index + 1))
                index = end + 1
            else:
                literal.append(char)
                index += 1
        if literal:
            parts.append("".join(literal))
        return cls(source, tuple(parts))

    def render(
        self,
        *,
        action: str,
        agent: str,
        title: str,
        requested_by: str | None,
        params: dict[str, Any],
    ) -> str:
        """The line for one request: each placeholder's value on one line and cut to
        :data:`MAX_VALUE_LENGTH`, the whole cut to :data:`MAX_LINE_LENGTH`."""
        values: dict[str, Any] = {
            "action": action,
            "agent": agent,
            "title": title,
            "requested_by": requested_by,
            "params": params,
        }
        shown: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                shown.append(part)
                continue
            found, value = _lookup(values[part.root], part.path)
            if not found or value is None:
                shown.append(f"(no {part.name})")
            else:
                shown.append(cut(_one_line(_text_of(value)), MAX_VALUE_LENGTH)[0])
        return cut("".join(shown), MAX_LINE_LENGTH)[0]


def _placeholder(inside: str, at: int) -> Placeholder:
    names = inside.strip().split(".")
    if not inside.strip():
        raise ValueError(f"the placeholder at character {at} is empty")
    root, *path = names
    if root not in ROOTS:
        raise ValueError(
            f"unknown placeholder {{{inside}}} at character {at}: it must start with one "
            f"of {', '.join(ROOTS)}"
        )
    if root != "params" and path:
        raise ValueError(f"{{{inside}}} at character {at}: only params has parts")
    for part in path:
        if not _PATH_PART.fullmatch(part):
            raise ValueError(
                f"{{{inside}}} at character {at}: {part!r} is not a key (letters, digits, "
                f"'_' and '-')"
            )
    return Placeholder(root, tuple(path))


def _lookup(value: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text).strip()
