"""Invisible and direction-changing characters are shown, everything else is kept."""

import pytest

from approvals.text import reveal_invisible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("invoice\u202egpj.exe", "invoice⟨U+202E⟩gpj.exe"),
        ("ad\u200bmin", "ad⟨U+200B⟩min"),
        ("\u2066x\u2069", "⟨U+2066⟩x⟨U+2069⟩"),
        ("\ufeffbom", "⟨U+FEFF⟩bom"),
        ("bell\x07", "bell⟨U+0007⟩"),
    ],
)
def test_hidden_characters_become_markers(raw, shown):
    assert reveal_invisible(raw) == shown


def test_ordinary_text_is_untouched():
    text = "Deploy web 1.2 → prod\n\tçà 🚀 العربية"
    assert reveal_invisible(text) == text
