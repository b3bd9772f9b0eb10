"""Untrusted text made honest to read: invisible and direction-changing characters shown.

Escaping keeps markup out; this handles what escaping cannot. Bidi controls reorder what a
reader sees (a right-to-left override turns ``invoice<RLO>gpj.exe`` into what looks like
``invoiceexe.jpg``) and zero-width characters hide inside names. Every platform shows agent
text through :func:`reveal_invisible`, so a card reads the same everywhere.
"""

from __future__ import annotations

import re

INVISIBLE_CHARACTERS = re.compile(
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


def reveal_invisible(text: str) -> str:
    """``text`` with every bidi control and invisible character shown as ``⟨U+XXXX⟩``."""
    return INVISIBLE_CHARACTERS.sub(_marker, text)


ELLIPSIS = "…"


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` at most ``limit`` characters, ending in an ellipsis when it had to be cut,
    and whether it was."""
    if len(text) <= limit:
        return text, False
    return text[: limit - len(ELLIPSIS)] + ELLIPSIS, True
