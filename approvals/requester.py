"""Who a request is for: ``requested_by`` matched to configured people by identity, not spelling.

Four-eyes says the person a request is made for may not decide it. An agent writes that
person's name as text, and text can name alice without being ``alice``: ``Alice``,
``alice `` with a trailing space, ``alice`` with a zero-width space, ``alice`` with a
Cyrillic first letter (U+0430), ``alice`` in fullwidth letters. So the name is first
normalised (NFKC, case-folded, invisible characters removed, surrounding space trimmed)
and matched exactly; a name that matches nobody that way but *looks like* a configured
person (Unicode's confusables, TS #39, through the ``confusables`` package) is ambiguous,
and signoff fails closed: every person it looks like is treated as the requester, and the
card says so.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import confusables

_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Format and control characters (zero-width spaces and joiners, bidi controls...),
surrogates, private-use and unassigned code points, line and paragraph separators."""


def normalized_name(text: str) -> str:
    """``text`` as a person's name is compared: NFKC, case-folded, invisible characters
    removed, surrounding white space trimmed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch for ch in folded if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    return unicodedata.normalize("NFKC", kept).strip()


@dataclass(frozen=True)
class RequesterMatch:
    """The configured people a ``requested_by`` names.

    Attributes:
        exact: the person whose name it is, after normalisation.
        lookalikes: other people whose names it only looks like (ambiguous: they may not
            decide either).
    """

    exact: str | None = None
    lookalikes: tuple[str, ...] = ()

    @property
    def persons(self) -> frozenset[str]:
        """Everyone who may not decide the request."""
        named = {self.exact} if self.exact is not None else set()
        return frozenset(named | set(self.lookalikes))

    @staticmethod
    def shown(requested_by: str | None) -> str:
        """``requested_by`` quoted with every non-ASCII character spelled out (``\\u0430``),
        so that a look-alike shows as what it is."""
        text = requested_by or ""
        return repr(text.encode("ascii", "backslashreplace").decode("ascii"))

    def note(self, requested_by: str | None) -> str | None:
        """What a card says when the match is ambiguous, else ``None``."""
        if not self.lookalikes:
            return None
        who = ", ".join(self.lookalikes)
        return (
            f"Requested for {self.shown(requested_by)}, which looks like {who}: "
            f"{'they' if len(self.lookalikes) > 1 else who} may not decide it"
        )


def match_requester(requested_by: str | None, people: Iterable[str]) -> RequesterMatch:
    """The people ``requested_by`` names exactly or looks like (see the module docstring)."""
    if requested_by is None or not requested_by.strip():
        return RequesterMatch()
    wanted = normalized_name(requested_by)
    nfkc = unicodedata.normalize("NFKC", requested_by).strip()
    exact: str | None = None
    lookalikes: list[str] = []
    for person in people:
        if normalized_name(person) == wanted:
            if exact is None:
                exact = person
            else:
                lookalikes.append(person)  # two people spelled alike: ambiguous, both out
        elif confusables.is_confusable(wanted, normalized_name(person)) or (
            confusables.is_confusable(nfkc, person)
        ):
            lookalikes.append(person)
    return RequesterMatch(exact, tuple(lookalikes))
