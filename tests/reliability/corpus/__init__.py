"""The bad-input corpus: one data file per kind of hostile input, read by the B scenarios.

Every file is YAML with one or more top-level lists of entries; every entry has an ``id``
(unique in its file) and an ``expect`` saying what the input must produce. Long strings are
written once and repeated with ``repeat: N`` (the text is then ``text * N``, followed by
the entry's ``then`` if it has one).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

CORPUS_DIR = Path(__file__).parent


@cache
def _load(name: str) -> dict[str, list[dict[str, Any]]]:
    data = yaml.safe_load((CORPUS_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name}: the top level is a mapping of lists"
    for section, entries in data.items():
        ids = [entry["id"] for entry in entries]
        assert len(ids) == len(set(ids)), f"{name}: ids repeat in {section}"
        for entry in entries:
            assert "expect" in entry, (
                f"{name}: {entry['id']} says nothing about what it must produce"
            )
            if "repeat" in entry:
                entry["text"] = entry["text"] * int(entry.pop("repeat")) + entry.pop("then", "")
    return data


def entries(name: str, section: str) -> list[dict[str, Any]]:
    """The entries of one list of a corpus file (copies: tests may change them)."""
    return [dict(entry) for entry in _load(name)[section]]


def cases(name: str, section: str) -> list[Any]:
    """The entries as ``pytest.param`` values, each named by its id."""
    return [pytest.param(entry, id=entry["id"]) for entry in entries(name, section)]
