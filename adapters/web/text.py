"""How untrusted agent text is shown: invisible and direction-changing characters made visible.

Autoescaping keeps HTML out; this module handles what escaping cannot: bidi controls that
reorder what a reader sees (a right-to-left override turns ``invoice<RLO>gpj.exe`` into
what looks like ``invoiceexe.jpg``) and zero-width characters that hide inside names. Each
is replaced by a visible marker such as ``⟨U+202E⟩``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

_INVISIBLE = re.compile(
    "["
    "\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # control characters but \t \n \r
    "\u00ad"  # soft hyphen
    "\u061c"  # Arabic letter mark
    "\u200b-\u200f"  # zero-width space, joiners, LRM, RLM
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u2064"  # word joiner, invisible operators
    "\u2066-\u2069"  # bidi isolates
    "\ufeff"  # zero-width no-break space (BOM)
    "]"
)


def _marker(match: re.Match[str]) -> str:
    return f"⟨U+{ord(match.group()):04X}⟩"


def visible(text: object) -> str:
    """``text`` with every bidi control and invisible character shown as ``⟨U+XXXX⟩``."""
    return _INVISIBLE.sub(_marker, "" if text is None else str(text))


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
