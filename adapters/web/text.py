"""How the inbox shows values: untrusted text made visible, JSON, times.

Autoescaping keeps HTML out; :func:`visible` shows what escaping cannot (bidi controls and
zero-width characters, as markers such as ``⟨U+202E⟩``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from approvals.text import reveal_invisible


def visible(text: object) -> str:
    """``text`` with every bidi control and invisible character shown as ``⟨U+XXXX⟩``."""
    return reveal_invisible("" if text is None else str(text))


def pretty_json(value: Any) -> str:
    """Params as indented JSON with sorted keys (the order the payload hash uses)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)


def utc(moment: datetime | None) -> str:
    """``2030-01-01 12:03 UTC``, or an empty string."""
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def relative(moment: datetime, now: datetime) -> str:
    """How far ``moment`` is from ``now`` in rough words: ``in 14 min``, ``3 h ago``."""
    delta = moment - now
    future = delta >= timedelta(0)
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        amount = "under a minute"
    elif seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 48 * 3600:
        amount = f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    else:
        amount = f"{int(seconds // 86400)} days"
    return f"in {amount}" if future else f"{amount} ago"


def read_edited_params(text: str) -> dict[str, Any] | str:
    """The params an approver typed (JSON object text), or what is wrong with them.

    Stricter than ``json.loads``: a key given twice, ``NaN`` and ``Infinity`` are refused
    rather than quietly resolved, since the approver must approve exactly what they see.
    """

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice")
            seen[key] = value
        return seen

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    if not text.strip():
        return "the edited params are empty; write a JSON object such as {}"
    try:
        value = json.loads(text, object_pairs_hook=unique_keys, parse_constant=no_constant)
    except RecursionError:
        return "the edited params nest too deeply"
    except ValueError as exc:
        return f"the edited params are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return "the edited params must be a JSON object ({...}), not a list or a single value"
    return value
