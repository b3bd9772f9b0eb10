"""Canonical JSON and the payload hash."""

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signoff_client.canonical import (
    CanonicalJsonError,
    _needs_no_care,
    _write,
    canonical_json,
    payload_sha256,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [1, 2, {"d": None, "c": True}]}, '{"a":[1,2,{"c":true,"d":null}],"b":1}'),
        ({"text": "héllo €"}, '{"text":"héllo €"}'),
        ({"ctl": "a\nb\u0001"}, '{"ctl":"a\\nb\\u0001"}'),
        (1.0, "1"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1.5e-5, "0.000015"),
        (123.456, "123.456"),
        (5e-324, "5e-324"),
        (2**60, str(2**60)),
    ],
)
def test_canonical_forms(value, expected):
    assert canonical_json(value).decode("utf-8") == expected


def test_keys_sort_by_utf16_code_units():
    # U+E000 sorts before U+1F600 in code points but after it in UTF-16 (surrogate D83D).
    data = {"\ue000": 1, "\U0001f600": 2}
    assert canonical_json(data).decode("utf-8") == '{"\U0001f600":2,"\ue000":1}'


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {"x": "\ud800"}, {1: "int key"}, {"s": {1, 2}}]
)
def test_values_without_a_canonical_form_are_refused(value):
    with pytest.raises(CanonicalJsonError):
        canonical_json(value)


def test_deep_nesting_is_refused_not_crashing():
    value: list[Any] = []
    for _ in range(500):
        value = [value]
    with pytest.raises(CanonicalJsonError):
        canonical_json(value)


def test_payload_hash_covers_action_and_params():
    expected = hashlib.sha256(b'{"action":"db.drop","params":{"table":"users"}}').hexdigest()
    assert payload_sha256("db.drop", {"table": "users"}) == expected
    assert payload_sha256("db.drop", {"table": "orders"}) != expected
    assert payload_sha256("db.truncate", {"table": "users"}) != expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_hash_ignores_key_order_and_round_trips(params):
    import json

    reordered = dict(reversed(list(params.items())))
    assert payload_sha256("a", params) == payload_sha256("a", reordered)
    assert json.loads(canonical_json(params)) == params


json_values_without_floats = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values | json_values_without_floats)
def test_the_fast_writer_and_the_careful_writer_agree(value):
    """canonical_json hands plain values to the standard library's writer; whatever path a
    value takes, the bytes are exactly what the careful RFC 8785 writer makes."""
    careful: list[str] = []
    _write(value, careful, 0)
    try:
        expected = "".join(careful).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(CanonicalJsonError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_the_fast_writer_takes_plain_values_only():
    assert _needs_no_care({"b": [1, "x", None, True], "a": {"c": "é€"}})
    assert not _needs_no_care({"a": 1.5})
    assert not _needs_no_care({"\U0001f600": 1, "\uffff": 2})  # UTF-16 order differs here
    assert canonical_json({"\U0001f600": 1, "\uffff": 2}) == '{"\U0001f600":1,"\uffff":2}'.encode()
