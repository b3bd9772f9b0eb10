"""Helpers every adapter shares: Retry-After parsing and the recently posted cards."""

from datetime import timedelta

import pytest

from approvals.ports import MAX_RETRY_AFTER, parse_retry_after

DEFAULT = timedelta(seconds=7)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", timedelta(seconds=2)),
        (1.5, timedelta(seconds=1.5)),
        (None, DEFAULT),
        ("soon", DEFAULT),
        ("-3", DEFAULT),
        ("nan", DEFAULT),
        ("inf", DEFAULT),
        ("1e12", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_values(raw, expected):
    assert parse_retry_after(raw, default=DEFAULT) == expected
