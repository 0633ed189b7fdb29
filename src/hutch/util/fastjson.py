"""JSON through the C accelerator `_json` directly.

`import json` pulls in `re` and `enum` (~5 ms together), which every runtime verb would
pay for at start-up. The C scanner and encoder behind `json` need neither; this module
drives them with the same settings json.loads/json.dumps use by default. Use the real
`json` for pretty-printing (indent), where start-up does not matter.
"""

from __future__ import annotations

import _json


class _Context:
    """The attributes _json.make_scanner reads from json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        # Python's json accepts NaN and Infinity; JSON (and Go) do not.
        raise JSONDecodeError(f"{name} is not valid JSON")


class JSONDecodeError(ValueError):
    pass


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(s: str | bytes) -> object:
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    i = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan(s, i)
    except StopIteration as e:
        raise JSONDecodeError(f"Expecting value: char {e.value}") from None
    end = len(s) if not s[end:].strip(_WS) else end
    if end != len(s):
        raise JSONDecodeError(f"Extra data: char {end}")
    return obj


def _default(o: object) -> object:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


# Compact separators, as Go's encoding/json writes (runc's ps --format json, events).
_encode = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                             ":", ",", False, False, True)


def dumps(obj: object) -> str:
    """Compact JSON: json.dumps(obj, separators=(",", ":"))."""
    return "".join(_encode(obj, 0))


_encode_sorted = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                                    ":", ",", True, False, True)


def dumps_sorted(obj: object) -> str:
    """Compact JSON with sorted keys: one text per value (stored labels, configs)."""
    return "".join(_encode_sorted(obj, 0))


def dumps_str(s: str) -> str:
    """A JSON string literal, non-ASCII kept as is (json.dumps(s, ensure_ascii=False))."""
    return _json.encode_basestring(s)
