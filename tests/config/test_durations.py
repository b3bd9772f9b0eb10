"""Durations: 30s, 15m, 1h, 2d, combinations, and whole seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config import format_duration, parse_duration
from tests.config.helpers import MINIMAL, load, problem_at, problems


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        (45, timedelta(seconds=45)),
        ("45", timedelta(seconds=45)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_duration_spellings_parse(written: object, expected: timedelta) -> None:
    assert parse_duration(written) == expected


@pytest.mark.parametrize(
    "written", ["", "5x", "m5", "1.5h", "30m1h", "1 h", "-5m", -5, 0, "0s", True, 1.5, None]
)
def test_durations_that_are_not_positive_durations_are_rejected(written: object) -> None:
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(written)


def test_duration_longer_than_a_year_is_rejected() -> None:
    with pytest.raises(ValueError, match="at most 365d"):
        parse_duration("366d")
    with pytest.raises(ValueError, match="at most 365d"):
        parse_duration(10**30)


@pytest.mark.parametrize(
    ("duration", "written"),
    [
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2), "2d"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_writes_the_config_spelling(duration: timedelta, written: str) -> None:
    assert format_duration(duration) == written


def test_level_timeout_accepts_whole_seconds() -> None:
    loaded = load(MINIMAL.replace("timeout: 30m", "timeout: 90"))

    assert loaded.policy_set().policies[0].levels[0].timeout == timedelta(seconds=90)


def test_zero_timeout_is_reported_at_its_key() -> None:
    found = problems(MINIMAL.replace("timeout: 30m", "timeout: 0"))

    problem = problem_at(found, "policies[0].levels[0].timeout")
    assert problem.line == 6
    assert "positive" in problem.message
