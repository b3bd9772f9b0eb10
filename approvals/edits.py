"""Approvals with edits: the limits on edited params, and what an edit changed.

An approver of a policy with ``edits: allowed`` may approve changed params instead of the
agent's. The core checks an edit here (the same limits as a create, so an edit never makes
a payload the agent API would refuse) and says what changed, for the inbox page, the log
and ``signoff run``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from signoff_client.canonical import CanonicalJsonError, canonical_json

MAX_EDITED_PARAMS_BYTES = 256 * 1024
"""The largest edited params, as canonical JSON: no larger than an agent may send."""
MAX_EDITED_PARAMS_DEPTH = 32
"""How deep edited params may nest: as deep as an agent's."""


def edited_params_problem(params: object) -> str | None:
    """What is wrong with edited params, in words for the person who typed them, or
    ``None``. The limits are those of a create, so an edit never makes a payload the agent
    API would refuse."""
    if not isinstance(params, dict):
        return "the edited params must be a JSON object ({...})"
    if _nesting(params) > MAX_EDITED_PARAMS_DEPTH:
        return f"the edited params may nest at most {MAX_EDITED_PARAMS_DEPTH} levels"
    try:
        size = len(canonical_json(params))
    except CanonicalJsonError as exc:
        return f"the edited params are not plain JSON: {exc}"
    if size > MAX_EDITED_PARAMS_BYTES:
        return f"the edited params are larger than {MAX_EDITED_PARAMS_BYTES // 1024} KiB"
    return None


def _nesting(value: object, level: int = 0) -> int:
    if level > MAX_EDITED_PARAMS_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_nesting(item, level + 1) for item in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_nesting(item, level + 1) for item in value), default=level + 1)
    return level


@dataclass(frozen=True)
class ParamChange:
    """One difference between two params objects, at a dotted path (``a.b``, ``items[2]``).

    ``before`` / ``after`` are JSON text, or ``None`` where the key is missing.
    """

    path: str
    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before is None:
            return f"{self.path}: added {self.after}"
        if self.after is None:
            return f"{self.path}: removed (was {self.before})"
        return f"{self.path}: {self.before} -> {self.after}"


def param_changes(original: Any, edited: Any, path: str = "") -> list[ParamChange]:
    """What differs between two params objects, object by object down to the changed values
    (lists are compared item by item when their lengths match, else as one value)."""
    if isinstance(original, dict) and isinstance(edited, dict):
        changes: list[ParamChange] = []
        for key in sorted(set(original) | set(edited)):
            where = f"{path}.{key}" if path else str(key)
            if key not in edited:
                changes.append(ParamChange(where, _text(original[key]), None))
            elif key not in original:
                changes.append(ParamChange(where, None, _text(edited[key])))
            else:
                changes.extend(param_changes(original[key], edited[key], where))
        return changes
    if isinstance(original, list) and isinstance(edited, list) and len(original) == len(edited):
        changes = []
        for index, (before, after) in enumerate(zip(original, edited, strict=True)):
            changes.extend(param_changes(before, after, f"{path}[{index}]"))
        return changes
    if _text(original) == _text(edited):
        return []
    return [ParamChange(path or "(params)", _text(original), _text(edited))]


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
