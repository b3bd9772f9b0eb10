"""Canonical JSON (RFC 8785 style) and the payload hash that ties an approval to its payload."""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any


class CanonicalJsonError(ValueError):
    """The value cannot be written as canonical JSON (NaN, infinity, lone surrogate, odd type)."""


def _number(value: float) -> str:
    # ECMAScript number formatting, which RFC 8785 prescribes: integers without a fraction,
    # positional notation for exponents in (-7, 21), otherwise "1e-7" / "1e+21" (no zero padding).
    if math.isnan(value) or math.isinf(value):
        raise CanonicalJsonError("NaN and infinity have no JSON form")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    shortest = repr(value)
    mantissa, _, exponent_text = shortest.partition("e")
    if not exponent_text:
        return shortest
    exponent = int(exponent_text)
    if -7 < exponent < 21:
        return format(Decimal(shortest), "f")
    return f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _utf16_order(key: str) -> bytes:
    # RFC 8785 sorts object keys by their UTF-16 code units, not by code points.
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str], depth: int) -> None:
    if depth > 200:
        raise CanonicalJsonError("value is nested more than 200 levels deep")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalJsonError(f"object keys must be strings, not {type(key).__name__}")
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_order)):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalJsonError(f"{type(value).__name__} is not a JSON value")


_FIRST_SURROGATE = "\ud800"


def _needs_no_care(value: Any, depth: int = 0) -> bool:
    """Whether the standard library's JSON writer already writes ``value`` canonically.

    It does for objects, arrays, strings, integers, booleans and null when no object key
    holds a character from U+D800 up (below it, sorting by code point is sorting by UTF-16
    code unit) and the nesting is shallow. Floats are what it writes differently
    (``1.0``, ``1e+16``), so a value holding one takes the careful path.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if depth >= 200:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (key and max(key) >= _FIRST_SURROGATE):
                return False
            if not _needs_no_care(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_needs_no_care(item, depth + 1) for item in value)
    return False


def canonical_json(value: Any) -> bytes:
    """Serialize a JSON value canonically: sorted keys, no whitespace, UTF-8.

    Raises:
        CanonicalJsonError: when the value is not plain JSON or holds a lone surrogate.
    """
    if _needs_no_care(value):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    else:
        out: list[str] = []
        _write(value, out, 0)
        text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalJsonError("strings must be valid Unicode (lone surrogate found)") from exc


def payload_sha256(action: str, params: dict[str, Any]) -> str:
    """The hex SHA-256 of the canonical JSON of ``{action, params}``: what an approval covers."""
    return hashlib.sha256(canonical_json({"action": action, "params": params})).hexdigest()
