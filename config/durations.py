"""Durations in config: ``30s``, ``15m``, ``1h``, ``2d``, ``1h30m``, or whole seconds."""

from __future__ import annotations

import re
from datetime import timedelta

MAX_DURATION = timedelta(days=365)
"""The longest duration config accepts; longer ones are almost certainly typos."""

_DURATION = re.compile(
    r"(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?"
)
_WHOLE_SECONDS = re.compile(r"[0-9]+")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_EXPECTED = "expected a duration such as 30s, 15m, 1h30m or 2d, or a whole number of seconds"


def parse_duration(value: object) -> timedelta:
    """Turn a config duration into a positive ``timedelta``.

    Args:
        value: a string such as ``"1h30m"`` (units ``d``, ``h``, ``m``, ``s``, in that
            order), a whole number of seconds (``90`` or ``"90"``), or a ``timedelta``.

    Returns:
        The duration.

    Raises:
        ValueError: the value is not a duration, or it is not positive, or it is longer
            than ``MAX_DURATION``.
    """
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(_EXPECTED)
    elif isinstance(value, int):
        duration = _seconds(value)
    else:
        text = value.strip()
        if text.startswith("-"):
            raise ValueError("must be a positive duration")
        if _WHOLE_SECONDS.fullmatch(text):
            duration = _seconds(int(text))
        else:
            match = _DURATION.fullmatch(text)
            if not text or match is None:
                raise ValueError(f"{_EXPECTED}, not {value!r}")
            total = sum(
                int(amount) * _UNIT_SECONDS[unit]
                for unit, amount in match.groupdict().items()
                if amount is not None
            )
            duration = _seconds(total)
    if duration <= timedelta(0):
        raise ValueError("must be a positive duration")
    if duration > MAX_DURATION:
        raise ValueError(f"must be at most {format_duration(MAX_DURATION)}")
    return duration


def _seconds(seconds: int) -> timedelta:
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"must be at most {format_duration(MAX_DURATION)}")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """Write a duration the way config does (``1h30m``); sub-second parts are dropped.

    Args:
        duration: a non-negative duration.

    Returns:
        The shortest config spelling, such as ``2d``, ``1h30m`` or ``0s``.
    """
    remaining = int(duration.total_seconds())
    if remaining <= 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS.items():
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
