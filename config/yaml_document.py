"""Reads a YAML config document safely, remembering the line of every key and value.

Only PyYAML's safe parser is used, and only to compose a node graph: nothing is
constructed from tags, so a ``!!python/object`` tag is reported, never acted on. Plain
values, lists and mappings are turned into Python values here, with ``${ENV_VAR}``
references filled in. Duplicate keys, unknown tags and missing variables are collected as
issues so that one pass reports them all; aliases are expanded under a node budget, so an
alias bomb ends quickly with an error instead of exhausting memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from config.environment import substitute
from config.problems import KeyPath

MAX_NODES = 10_000
"""How many values a document may hold once its aliases are expanded."""

MAX_DEPTH = 64
"""How deeply lists and mappings may nest."""

_STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"
_STR = _STANDARD_TAG_PREFIX + "str"
_NULL = _STANDARD_TAG_PREFIX + "null"
_BOOL = _STANDARD_TAG_PREFIX + "bool"
_INT = _STANDARD_TAG_PREFIX + "int"
_FLOAT = _STANDARD_TAG_PREFIX + "float"
_TIMESTAMP = _STANDARD_TAG_PREFIX + "timestamp"
_SEQ = _STANDARD_TAG_PREFIX + "seq"
_MAP = _STANDARD_TAG_PREFIX + "map"
_MERGE = _STANDARD_TAG_PREFIX + "merge"
_KEY_TAGS = frozenset({_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP})


@dataclass(frozen=True)
class SourceIssue:
    """A problem found while reading the document, before the schema sees it.

    Attributes:
        path: where in the document.
        line: the 1-based line, or ``None`` when unknown.
        message: what is wrong.
        value_dropped: whether the value at ``path`` was replaced (by ``None`` or partly
            filled-in text), so later complaints about that value would only be echoes.
    """

    path: KeyPath
    line: int | None
    message: str
    value_dropped: bool = True


class DocumentError(Exception):
    """The document cannot be read at all (bad syntax, too large once expanded)."""

    def __init__(self, issue: SourceIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


@dataclass
class ParsedDocument:
    """A document turned into Python values, with where each value was written.

    Attributes:
        data: the root value (``None`` for an empty document).
        lines: key path -> 1-based line. For a mapping entry, the line of its key; for a
            list item, the line where the item starts; values reached through an alias
            are placed at the alias.
        issues: problems that do not stop reading (duplicate keys, unknown tags, missing
            variables); the offending values are replaced by ``None``.
    """

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    issues: list[SourceIssue] = field(default_factory=list)

    def line_for(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that was written down."""
        for length in range(len(path), -1, -1):
            line = self.lines.get(path[:length])
            if line is not None:
                return line
        return None


class _AliasNode(yaml.Node):
    """Stands where an alias (``*name``) was written, pointing at the anchored node.

    PyYAML's composer hands back the anchored node itself for an alias, which loses the
    alias's own position; this keeps it, so values reached through an alias are reported
    at the line that uses them.
    """

    def __init__(self, target: yaml.Node, mark: yaml.Mark | None) -> None:
        super().__init__(target.tag, target.value, mark, mark)
        self.target = target


class _PositionKeepingLoader(yaml.SafeLoader):
    """PyYAML's safe loader, used only to compose nodes, keeping alias positions."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            target = super().compose_node(parent, index)
            return None if target is None else _AliasNode(target, mark)
        return super().compose_node(parent, index)


def _line(mark: yaml.Mark | None) -> int | None:
    return None if mark is None else mark.line + 1


def _show_tag(tag: str) -> str:
    if tag.startswith(_STANDARD_TAG_PREFIX):
        return "!!" + tag.removeprefix(_STANDARD_TAG_PREFIX)
    return tag


def _syntax_error(exc: yaml.YAMLError, text: str) -> SourceIssue:
    if isinstance(exc, yaml.MarkedYAMLError):
        message = exc.problem or exc.context or "invalid YAML"
        context_line = _line(exc.context_mark)
        where = f" at line {context_line}" if context_line is not None else ""
        if exc.context and exc.problem == "second occurrence":  # a repeated anchor name
            message = f"{exc.context}{where}, second occurrence here"
        elif exc.context and exc.problem:
            message = f"{exc.problem} ({exc.context}{where})"
        if "'\\t'" in message:
            message += "; YAML indents with spaces, not tabs"
        line = _line(exc.problem_mark) or _line(exc.context_mark)
        return SourceIssue((), line, f"invalid YAML: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position) + 1
        return SourceIssue((), line, f"invalid YAML: {exc.reason} (character {exc.character!r})")
    return SourceIssue((), None, f"invalid YAML: {exc}")


class _Converter:
    """Turns composed nodes into Python values, recording lines and issues."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[SourceIssue] = []
        self.node_count = 0
        self.open_collections: set[int] = set()
        self.outermost_alias: tuple[KeyPath, int | None] | None = None
        self.scalars = SafeConstructor()

    def convert(self, node: yaml.Node, path: KeyPath, alias_line: int | None, depth: int) -> Any:
        if isinstance(node, _AliasNode):
            line = alias_line if alias_line is not None else _line(node.start_mark)
            if self.outermost_alias is not None:
                return self.convert(node.target, path, line, depth)
            self.outermost_alias = (path, line)
            try:
                return self.convert(node.target, path, line, depth)
            finally:
                self.outermost_alias = None

        line = alias_line if alias_line is not None else _line(node.start_mark)
        self._count(path, line)
        if line is not None:
            self.lines[path] = line
        if depth > MAX_DEPTH:
            raise DocumentError(
                SourceIssue(path[:1], line, f"lists and mappings nest more than {MAX_DEPTH} deep")
            )
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path, line)
        if id(node) in self.open_collections:
            self._issue(path, line, "an alias refers to a list or mapping that contains it")
            return None
        self.open_collections.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path, alias_line, depth)
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, alias_line, depth)
        finally:
            self.open_collections.discard(id(node))
        self._issue(path, line, "unsupported YAML node")  # pragma: no cover - PyYAML makes 3 kinds
        return None  # pragma: no cover

    def _count(self, path: KeyPath, line: int | None) -> None:
        self.node_count += 1
        if self.node_count <= MAX_NODES:
            return
        where_path, where_line = self.outermost_alias or (path, line)
        raise DocumentError(
            SourceIssue(
                where_path,
                where_line,
                f"the document holds more than {MAX_NODES} values once aliases are expanded "
                "(an alias bomb?)",
            )
        )

    def _issue(
        self, path: KeyPath, line: int | None, message: str, *, value_dropped: bool = True
    ) -> None:
        self.issues.append(SourceIssue(path, line, message, value_dropped))

    def _unsupported_tag(
        self, node: yaml.Node, path: KeyPath, line: int | None, *, value_dropped: bool = True
    ) -> None:
        self._issue(
            path,
            line,
            f"unsupported YAML tag {_show_tag(node.tag)!r}: only plain text, numbers, "
            "true/false, null, lists and mappings are allowed",
            value_dropped=value_dropped,
        )

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath, line: int | None) -> Any:
        tag = node.tag
        try:
            if tag == _STR:
                return self._substitute(str(node.value), path, line)
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return self.scalars.construct_yaml_bool(node)
            if tag == _INT:
                return self.scalars.construct_yaml_int(node)
            if tag == _FLOAT:
                return self.scalars.construct_yaml_float(node)
            if tag == _TIMESTAMP:
                return str(node.value)  # no setting is a date: keep the text as written
        except (ValueError, ConstructorError):
            self._issue(path, line, f"{node.value!r} is not a valid {_show_tag(tag)} value")
            return None
        self._unsupported_tag(node, path, line)
        return None

    def _substitute(self, text: str, path: KeyPath, line: int | None) -> str:
        result = substitute(text, self.environ)
        for name in result.missing:
            self._issue(path, line, f"environment variable {name} is not set")
        for reference in result.malformed:
            self._issue(
                path,
                line,
                f"{reference!r} is not a valid ${{ENV_VAR}} reference: write ${{NAME}}, where "
                "NAME has letters, digits and _ and does not start with a digit "
                "(write $${...} for a literal ${...})",
            )
        return result.value

    def _sequence(
        self, node: yaml.SequenceNode, path: KeyPath, alias_line: int | None, depth: int
    ) -> list[Any] | None:
        if node.tag != _SEQ:
            self._unsupported_tag(node, path, alias_line or _line(node.start_mark))
            return None
        return [
            self.convert(item, (*path, index), alias_line, depth + 1)
            for index, item in enumerate(node.value)
        ]

    def _mapping(
        self, node: yaml.MappingNode, path: KeyPath, alias_line: int | None, depth: int
    ) -> dict[str, Any] | None:
        if node.tag != _MAP:
            self._unsupported_tag(node, path, alias_line or _line(node.start_mark))
            return None
        own_line = self.lines.get(path)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merge_line = alias_line if alias_line is not None else _line(key_node.start_mark)
                self._merge_into(result, value_node, path, merge_line, depth)
        if own_line is not None:
            self.lines[path] = own_line
        # Keys written in the mapping itself override merged ones.
        first_lines: dict[str, int | None] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            key_line = alias_line if alias_line is not None else _line(key_node.start_mark)
            key = self._key(key_node, path, key_line)
            if key is None:
                continue
            if key in first_lines:
                first = first_lines[key]
                where = f" at line {first}" if first is not None else ""
                self._issue(
                    (*path, key),
                    key_line,
                    f"duplicate key {key!r}: it is also set{where}; keep only one",
                    value_dropped=False,
                )
            else:
                first_lines[key] = key_line
            result[key] = self.convert(value_node, (*path, key), alias_line, depth + 1)
            if key_line is not None:
                self.lines[(*path, key)] = key_line
        return result

    def _key(self, key_node: yaml.Node, path: KeyPath, line: int | None) -> str | None:
        target = key_node.target if isinstance(key_node, _AliasNode) else key_node
        if not isinstance(target, yaml.ScalarNode):
            self._issue(
                path,
                line,
                "mapping keys must be plain text, not lists or mappings",
                value_dropped=False,
            )
            return None
        if target.tag not in _KEY_TAGS:
            self._unsupported_tag(target, path, line, value_dropped=False)
            return None
        # The key as written: a person called "no" stays "no", never the boolean False.
        return str(target.value)

    def _merge_into(
        self,
        result: dict[str, Any],
        source_node: yaml.Node,
        path: KeyPath,
        merge_line: int | None,
        depth: int,
    ) -> None:
        """Apply a ``<<: *anchor`` merge; earlier merged mappings win over later ones."""
        target = source_node.target if isinstance(source_node, _AliasNode) else source_node
        sources = target.value if isinstance(target, yaml.SequenceNode) else [source_node]
        for source in sources:
            merged = self.convert(source, path, merge_line, depth + 1)
            if not isinstance(merged, dict):
                self._issue(
                    path,
                    merge_line,
                    "a merge key (<<) needs a mapping or a list of them",
                    value_dropped=False,
                )
                continue
            for key, value in merged.items():
                result.setdefault(key, value)


def parse_document(text: str, environ: Mapping[str, str]) -> ParsedDocument:
    """Read one YAML document into Python values with line numbers.

    Args:
        text: the document.
        environ: where ``${ENV_VAR}`` references are looked up.

    Returns:
        The values, their lines, and the issues that did not stop reading.

    Raises:
        DocumentError: the document is not valid YAML, holds more than one document,
            nests too deeply, or expands beyond ``MAX_NODES`` values.
    """
    try:
        loader = _PositionKeepingLoader(text)
    except yaml.YAMLError as exc:  # the reader checks every character up front
        raise DocumentError(_syntax_error(exc, text)) from None
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise DocumentError(_syntax_error(exc, text)) from None
    except RecursionError:
        line = _line(loader.get_mark())
        raise DocumentError(
            SourceIssue((), line, "lists and mappings nest too deeply to read")
        ) from None
    finally:
        loader.dispose()
    if root is None:
        return ParsedDocument(data=None)
    converter = _Converter(environ)
    data = converter.convert(root, (), None, 0)
    return ParsedDocument(data=data, lines=converter.lines, issues=converter.issues)
