"""Loads a config file: safe YAML, checked settings, and the core's policies and directory.

``load_config`` reads a file, ``load_config_text`` a string, and ``default_config`` the
built-in default shipped as ``config/default.yaml``. Every problem found is reported at
once, as ``file:line: key.path: message``, in one ``ConfigError``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from approvals.describe import DescribeTemplate
from approvals.directory import Destination, DestinationKind, Directory, Person
from approvals.policy import Level, Match, ParamPredicate, Policy, PolicySet
from config.checks import find_problems
from config.problems import ConfigError, ConfigProblem, KeyPath, format_key_path
from config.schema import (
    CHAT_PLATFORMS,
    SECRETS_FROM_ENVIRONMENT,
    PolicySettings,
    SignoffSettings,
)
from config.yaml_document import DocumentError, SourceIssue, parse_document

DEFAULT_SOURCE = "<built-in default>"
"""The source name problems in the built-in default would carry."""

MAX_CONFIG_BYTES = 1_000_000
"""The largest config file read; real ones are a few kilobytes."""


@dataclass(frozen=True)
class LoadedConfig:
    """A config that passed every check, and the core values built from it.

    Attributes:
        source: where it came from: the file path as given, or ``<built-in default>``.
        settings: the validated settings.
        file_sha256: the SHA-256 of the file's bytes as read (``None`` when not from a file).
    """

    source: str
    settings: SignoffSettings
    file_sha256: str | None = None
    _policy_set: PolicySet = field(init=False, repr=False, compare=False)
    _directory: Directory = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_policy_set", build_policy_set(self.settings))
        object.__setattr__(self, "_directory", build_directory(self.settings))

    def policy_set(self) -> PolicySet:
        """The ordered policies, with groups expanded to person names."""
        return self._policy_set

    def directory(self) -> Directory:
        """People with their platform identities, named channels, configured platforms."""
        return self._directory


def build_policy_set(settings: SignoffSettings) -> PolicySet:
    """The core's policies for validated settings.

    Raises:
        ValueError: the settings break a rule of the core (config checks prevent this).
    """
    return PolicySet(tuple(_build_policy(settings, policy) for policy in settings.policies))


def _build_policy(settings: SignoffSettings, policy: PolicySettings) -> Policy:
    match = Match(
        actions=tuple(policy.match.action or ()),
        agents=tuple(policy.match.agent or ()),
        params=tuple(
            ParamPredicate(path=path, op=condition.op, operand=condition.operand)
            for path, condition in policy.match.params.items()
        ),
    )
    levels = tuple(
        Level(
            approvers=settings.expand_approvers(level.approvers),
            notify=tuple(level.notify),
            timeout=level.timeout,
            remind_every=level.remind_every,
        )
        for level in policy.levels
    )
    return Policy(
        name=policy.name,
        levels=levels,
        match=match,
        risk=policy.risk,
        describe=DescribeTemplate.parse(policy.describe) if policy.describe else None,
        decision=policy.decision,
        quorum=policy.quorum,
        require_reason=policy.require_reason,
        deny_repeat=policy.deny_repeat,
        grants=policy.grants.rule() if policy.grants else None,
        on_timeout=policy.on_timeout,
        min_timeout=policy.min_timeout,
        max_timeout=policy.max_timeout,
        edits=policy.edits,
        confirm=policy.confirm,
    )


def build_directory(settings: SignoffSettings) -> Directory:
    """The core's directory (people, channels, chat platforms) for validated settings.

    Raises:
        ValueError: two people share a platform identity (config checks prevent this).
    """
    people = {
        name: Person(name=name, identities=person.identities())
        for name, person in settings.people.items()
    }
    channels = {
        name: tuple(
            Destination(platform, DestinationKind.CHANNEL, target)
            for platform, target in channel.ids().items()
        )
        for name, channel in settings.channels.items()
    }
    platforms = frozenset(p for p in CHAT_PLATFORMS if p in settings.platforms.chat_platforms)
    platforms |= settings.platforms.delivery_platforms - settings.platforms.chat_platforms
    return Directory(
        people=people,
        channels=channels,
        platforms=platforms,
        admins=frozenset(settings.admins),
    )


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Read, check and build a config file.

    Args:
        path: the YAML file.
        environ: where ``${ENV_VAR}`` references are looked up; ``os.environ`` if omitted.

    Returns:
        The loaded config.

    Raises:
        ConfigError: the file cannot be read or has problems; all of them are listed.
    """
    source = os.fspath(path)
    try:
        with Path(source).open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [ConfigProblem(source, None, "", f"cannot read the file: {reason}")]
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [ConfigProblem(source, None, "", f"the file is larger than {MAX_CONFIG_BYTES} bytes")]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(source, line, "", "the file is not UTF-8 text")]) from None
    return load_config_text(
        text, source, environ=environ, file_sha256=hashlib.sha256(raw).hexdigest()
    )


def load_config_text(
    text: str,
    source: str,
    *,
    environ: Mapping[str, str] | None = None,
    file_sha256: str | None = None,
) -> LoadedConfig:
    """Check and build a config from YAML text.

    Args:
        text: the YAML document.
        source: the name problems carry, such as the file path.
        environ: where ``${ENV_VAR}`` references are looked up; ``os.environ`` if omitted.
        file_sha256: the SHA-256 of the file the text was read from, to remember.

    Returns:
        The loaded config.

    Raises:
        ConfigError: the text has problems; all of them are listed.
    """
    environ = os.environ if environ is None else environ
    try:
        document = parse_document(text, environ)
    except DocumentError as exc:
        raise ConfigError([_from_issue(source, exc.issue)]) from None

    problems = [_from_issue(source, issue) for issue in document.issues]
    if document.data is None:
        problems.append(
            ConfigProblem(
                source, 1, "", "the file is empty: a config needs at least version and policies"
            )
        )
        raise ConfigError(problems)
    if not isinstance(document.data, dict):
        problems.append(
            ConfigProblem(
                source,
                document.line_for(()),
                "",
                "the top level must be a mapping of keys (version, people, policies, ...)",
            )
        )
        raise ConfigError(problems)

    settings: SignoffSettings | None = None
    try:
        settings = SignoffSettings.model_validate(
            document.data, context={SECRETS_FROM_ENVIRONMENT: True}
        )
    except ValidationError as exc:
        dropped = [issue.path for issue in document.issues if issue.value_dropped]
        for error in exc.errors(include_url=False):
            path = _data_path(document.data, error["loc"])
            echoed = any(path[: len(prefix)] == prefix for prefix in dropped)
            if echoed and error["type"] != "extra_forbidden":
                continue  # an echo of a value already reported (missing variable, bad tag)
            problems.append(
                ConfigProblem(
                    source,
                    document.line_for(path),
                    format_key_path(path),
                    _describe(error),
                )
            )

    if settings is not None and not problems:
        for finding in find_problems(settings):
            problems.append(
                ConfigProblem(
                    source,
                    document.line_for(finding.path),
                    format_key_path(finding.path),
                    finding.message,
                )
            )
    if problems or settings is None:
        raise ConfigError(problems)
    try:
        return LoadedConfig(source=source, settings=settings, file_sha256=file_sha256)
    except ValueError as exc:  # a rule of the core that the checks above missed
        raise ConfigError([ConfigProblem(source, None, "", str(exc))]) from None


def default_config() -> LoadedConfig:
    """The built-in default: SQLite, the web inbox only, one person ``admin``.

    Returns:
        The loaded default config.
    """
    text = resources.files("config").joinpath("default.yaml").read_text(encoding="utf-8")
    return load_config_text(text, DEFAULT_SOURCE, environ={})


def _from_issue(source: str, issue: SourceIssue) -> ConfigProblem:
    return ConfigProblem(source, issue.line, format_key_path(issue.path), issue.message)


# --- turning pydantic errors into problems a person can act on -----------------------


def _data_path(data: Any, loc: tuple[int | str, ...]) -> KeyPath:
    """The key path of an error location, keeping only the parts present in the document.

    Pydantic locations may hold validator labels that are not keys; a missing key is
    always the last part, and ``[key]`` (an invalid mapping key) names its parent.
    """
    path: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        is_last = position == len(loc) - 1
        in_mapping = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_mapping or in_list:
            current = current[part]
            path.append(part)
        elif is_last and part != "[key]":
            path.append(part)
    return tuple(path)


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    message = error["msg"]
    if kind == "missing":
        return "this key is required but missing"
    if kind == "extra_forbidden":
        return _unknown_key_message(error["loc"])
    if kind in ("value_error", "assertion_error"):
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _EXPECTED_TYPES:
        return f"expected {_EXPECTED_TYPES[kind]}, got {_describe_value(error['input'])}"
    if kind in ("enum", "literal_error"):
        expected = message.removeprefix("Input should be ")
        return f"expected {expected}, got {_describe_value(error['input'])}"
    if kind == "too_short":
        count = context.get("min_length", 1)
        return f"needs at least {count} item{'s' if count != 1 else ''}"
    for bound, wording in _BOUNDS.items():
        if kind == bound:
            return f"must be {wording} {context.get(_BOUND_CONTEXT[bound])}"
    return message.replace("Input should be", "expected")


_EXPECTED_TYPES = {
    "string_type": "text",
    "string_sub_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
}
_BOUNDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}
_BOUND_CONTEXT = {
    "greater_than": "gt",
    "greater_than_equal": "ge",
    "less_than": "lt",
    "less_than_equal": "le",
}


def _describe_value(value: object) -> str:
    """What kind of value was written, without repeating it (it may be a secret)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown_key_message(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}expected one of: {', '.join(allowed)}"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The settings model that validates the value at ``loc``, if it is a model."""
    current: Any = SignoffSettings
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field_info = current.model_fields.get(part) if isinstance(part, str) else None
            if field_info is None:
                return None
            current = field_info.annotation
        elif origin is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif origin is dict and isinstance(part, str):
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


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
