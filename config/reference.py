"""The configuration reference (docs/configuration.md), written from ``config.schema``.

Every key's meaning is its field's ``description`` there, and its default is the field's
default, so the reference cannot drift from what the loader accepts. ``signoff config
reference`` (or ``python -m config.reference``) rewrites the part of docs/configuration.md
between the two marker comments; a test fails when that page and the schema disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from config.durations import format_duration
from config.schema import REFERENCE_AS_ONE_VALUE, PolicySettings, SignoffSettings

START_MARKER = "<!-- config-reference:start -->"
END_MARKER = "<!-- config-reference:end -->"
REFERENCE_PAGE = Path("docs/configuration.md")
"""Where the reference lives, from the checkout's root."""
GENERATED_NOTE = (
    "<!-- Written by `signoff config reference` from the field descriptions in "
    "config/schema.py: edit those, then run it again. -->"
)
MAP_KEY = "NAME"
"""How a mapping's own keys (person names, channel names, ...) are shown in key paths."""


@dataclass(frozen=True)
class Row:
    """One key of the reference: its dotted path, what it means, and its default."""

    key: str
    meaning: str
    default: str


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the type that holds the value."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _as_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def allowed_values(field: FieldInfo) -> tuple[str, ...]:
    """The values a ``Literal`` or enum field accepts, as written in YAML (else empty)."""
    annotation = _unwrap(field.annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(value) for value in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(str(member.value) for member in annotation)
    return ()


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`" if value else "none"
    return f"`{value}`"


def _default(field: FieldInfo, is_section: bool) -> str:
    if field.is_required():
        return "required"
    factory = field.default_factory
    value = field.default if factory is None else factory()  # type: ignore[call-arg]
    if value is None:
        return "not used" if is_section else "none"
    if isinstance(value, BaseModel):
        return ""  # a section: its keys say their own defaults
    return _shown(value)


def _meaning(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(
            f"{model.__name__}.{name} has no description; the configuration reference needs one"
        )
    return " ".join(field.description.split()).replace("|", "\\|")


def rows_for(model: type[BaseModel], prefix: str = "") -> Iterator[Row]:
    """The reference rows for ``model``'s fields, depth first, in declaration order.

    Sections and mappings of sections are followed into; lists of sections get ``[]`` in
    the path. ``policies`` is left at one row: the policy has a table of its own.
    """
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = _unwrap(field.annotation)
        origin = typing.get_origin(annotation)
        as_one_value = bool(
            isinstance(field.json_schema_extra, dict)
            and field.json_schema_extra.get(REFERENCE_AS_ONE_VALUE)
        )
        section = None if as_one_value else _as_model(annotation)
        if origin is dict and not as_one_value:
            item = _as_model(typing.get_args(annotation)[1])
            shown_key = f"{key}.{MAP_KEY}"
            yield Row(shown_key, _meaning(model, name, field), _default(field, False))
            if item is not None:
                yield from rows_for(item, f"{shown_key}.")
        elif origin is list and not as_one_value and _as_model(typing.get_args(annotation)[0]):
            item = _as_model(typing.get_args(annotation)[0])
            assert item is not None
            yield Row(f"{key}[]", _meaning(model, name, field), _default(field, False))
            if item is not PolicySettings:
                yield from rows_for(item, f"{key}[].")
        elif section is not None:
            yield Row(key, _meaning(model, name, field), _default(field, True))
            yield from rows_for(section, f"{key}.")
        else:
            yield Row(key, _meaning(model, name, field), _default(field, False))


def _table(rows: Sequence[Row]) -> list[str]:
    lines = ["| key | meaning | default |", "|---|---|---|"]
    lines += [f"| `{row.key}` | {row.meaning} | {row.default} |" for row in rows]
    return lines


def render_reference() -> str:
    """The markdown that belongs between the markers (the markers themselves excluded)."""
    lines = [
        GENERATED_NOTE,
        "",
        *_table(list(rows_for(SignoffSettings))),
        "",
        "Each entry of `policies`:",
        "",
        *_table(list(rows_for(PolicySettings))),
    ]
    return "\n".join(lines)


def _split(readme: str) -> tuple[str, str, str]:
    start = readme.find(START_MARKER)
    end = readme.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"no {START_MARKER} ... {END_MARKER} section for the reference to go in")
    return (
        readme[: start + len(START_MARKER)],
        readme[start + len(START_MARKER) : end],
        readme[end:],
    )


def current_reference(readme: str) -> str:
    """What the page holds between the markers, without the surrounding newlines."""
    return _split(readme)[1].strip("\n")


def with_reference(readme: str) -> str:
    """The page's text with the section between the markers replaced by a fresh reference."""
    head, _old, tail = _split(readme)
    return f"{head}\n{render_reference()}\n{tail}"


def write_reference(readme_path: Path) -> bool:
    """Rewrite the reference in ``readme_path``. Returns whether anything changed."""
    text = readme_path.read_text(encoding="utf-8")
    updated = with_reference(text)
    if updated == text:
        return False
    readme_path.write_text(updated, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m config.reference [FILE] [--check]``: 0 done or current, 1 stale, 2 error."""
    parser = argparse.ArgumentParser(
        prog="python -m config.reference",
        description="Write the configuration reference from config/schema.py.",
    )
    parser.add_argument(
        "readme", nargs="?", default=str(REFERENCE_PAGE), help="default: %(default)s"
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when the reference is stale"
    )
    args = parser.parse_args(argv)
    return run(Path(args.readme), check=args.check)


def run(readme: Path, *, check: bool) -> int:
    """Write (or with ``check``, compare) the reference in ``readme``; returns an exit code."""
    try:
        text = readme.read_text(encoding="utf-8")
        fresh = with_reference(text)
    except (OSError, ValueError) as exc:
        print(f"{readme}: {exc}", file=sys.stderr)
        return 2
    if check:
        if fresh != text:
            print(
                f"{readme}: the configuration reference is out of date with config/schema.py; "
                "run `signoff config reference` to rewrite it",
                file=sys.stderr,
            )
            return 1
        print(f"{readme}: the configuration reference is up to date")
        return 0
    if fresh == text:
        print(f"{readme}: the configuration reference is already up to date")
    else:
        readme.write_text(fresh, encoding="utf-8")
        print(f"{readme}: configuration reference rewritten from config/schema.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
