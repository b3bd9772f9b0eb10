"""Durations in config: ``30s``, ``15m``, ``1h``, ``2d``, ``1h30m``, or whole seconds.

Send intervals (how far apart messages to one chat go) may also be a fraction of a second:
``1.5s`` or ``1500ms``.
"""

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

MAX_INTERVAL = timedelta(hours=1)
"""The longest send interval config accepts: one message an hour to a chat is already a
chat nobody hears from."""
_INTERVAL = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]{1,3})?)(?P<unit>ms|s)?")
_EXPECTED_INTERVAL = (
    "expected a send interval such as 1s, 1.5s, 1500ms or 1m (seconds may have up to "
    "three decimals)"
)


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


def parse_interval(value: object) -> timedelta:
    """Turn a config send interval into a positive ``timedelta``.

    Args:
        value: a duration as :func:`parse_duration` takes it (``"1m"``, ``"1m30s"``,
            ``90``), seconds with up to three decimals (``"1.5s"``, ``"1.5"``, ``1.5``),
            whole milliseconds (``"1500ms"``), or a ``timedelta``.

    Returns:
        The interval.

    Raises:
        ValueError: the value is not an interval, or it is not positive, or it is longer
            than ``MAX_INTERVAL``.
    """
    interval = value if isinstance(value, timedelta) else _interval(value)
    if interval <= timedelta(0):
        raise ValueError("must be a positive interval")
    if interval > MAX_INTERVAL:
        raise ValueError(f"must be at most {format_interval(MAX_INTERVAL)}")
    return interval


def _interval(value: object) -> timedelta:
    # Anything longer than this is refused anyway; capping first keeps timedelta in range.
    too_long = MAX_INTERVAL + timedelta(seconds=1)
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value) if abs(value) <= too_long.total_seconds() else too_long
    text = repr(value) if isinstance(value, float) else value
    if not isinstance(text, str):
        raise ValueError(f"{_EXPECTED_INTERVAL}, not {value!r}")
    text = text.strip()
    if text.startswith("-"):
        raise ValueError("must be a positive interval")
    if match := _INTERVAL.fullmatch(text):
        amount, unit = match.group("amount"), match.group("unit")
        whole, _, fraction = amount.partition(".")
        if len(whole) > 6:
            return too_long
        if unit == "ms":
            if fraction:
                raise ValueError(f"{_EXPECTED_INTERVAL}, not {value!r}")
            return timedelta(milliseconds=int(whole))
        return timedelta(seconds=int(whole), milliseconds=int(fraction.ljust(3, "0")))
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{_EXPECTED_INTERVAL}, not {value!r}")
    total = sum(
        int(amount) * _UNIT_SECONDS[unit]
        for unit, amount in match.groupdict().items()
        if amount is not None
    )
    return timedelta(seconds=total) if total <= too_long.total_seconds() else too_long


def format_interval(interval: timedelta) -> str:
    """Write a send interval the way config does: ``1s``, ``1.5s``, ``2m``, ``0.25s``.

    Args:
        interval: a non-negative interval; parts below a millisecond are dropped.

    Returns:
        Whole seconds as :func:`format_duration` writes them, else seconds with decimals.
    """
    milliseconds = interval // timedelta(milliseconds=1)
    if milliseconds % 1000 == 0:
        return format_duration(interval)
    return f"{milliseconds / 1000:g}s"
