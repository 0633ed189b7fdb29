"""hutch.util.fastjson agrees with the json module and refuses what JSON refuses."""

from __future__ import annotations

import json

import pytest

from hutch.util import fastjson

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, False, "x\u00e9\n\u2028"]}, [], "", 0, -1, 1e300,
    {"nested": {"deep": [{"k": "v"}]}},
])
def test_round_trip_matches_json(value):
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert fastjson.loads(fastjson.dumps(value)) == value


@pytest.mark.parametrize("text", ["", "{", '{"a":1} x', "NaN", "[Infinity]", "[-Infinity]"])
def test_invalid_json_raises_value_error(text):
    with pytest.raises(ValueError):
        fastjson.loads(text)


def test_surrounding_whitespace_is_fine():
    assert fastjson.loads(' \n{"a": 1}\t\n') == {"a": 1}


def test_unserialisable_objects_raise_type_error():
    with pytest.raises(TypeError):
        fastjson.dumps({"a": object()})


@pytest.mark.parametrize("value", [
    {"b": 1, "a": {"z": [3, {"y": None, "x": "\u00e9"}], "c": 2.5}}, [], {},
])
def test_dumps_sorted_is_json_with_sorted_keys_byte_for_byte(value):
    # The seccomp cache key hashes it: a filter cached by the json module's text stays
    # valid only if the bytes are the same.
    assert fastjson.dumps_sorted(value) == json.dumps(value, sort_keys=True,
                                                      separators=(",", ":"))
