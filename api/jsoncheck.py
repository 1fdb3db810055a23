"""JSON as the service accepts it: parsed once, refused where it cannot be kept exactly.

orjson parses integers beyond 64 bits as floats (`123456789012345678901234567890`
would be stored as `1.2345678901234568e+29`) and encodes at most 254 levels of
nesting, so such data either changes or fails on its way out. Both are refused here,
where it is parsed, for REST bodies and socket frames alike. The checks cost two
`count`s and one regex search on the common path; the walks run only when those
say they might find something.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 64  # levels of arrays and objects in one body or frame
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson keeps as an integer
# Only a run of 19 or more digits can be an integer out of range.
_LONG_DIGITS = re.compile(r"\d{19,}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19,}")


class JsonRefused(ValueError):
    """Valid JSON that the service will not store; the message says why."""


def loads(raw: str | bytes) -> Any:
    """Parse like `orjson.loads` (raising its `JSONDecodeError` for invalid JSON), or
    raise `JsonRefused` for nesting deeper than MAX_DEPTH or an out-of-range integer."""
    value = orjson.loads(raw)
    if isinstance(raw, str):
        containers = raw.count("[") + raw.count("{")
        long_digits = _LONG_DIGITS.search(raw) is not None
    else:
        containers = raw.count(b"[") + raw.count(b"{")
        long_digits = _LONG_DIGITS_BYTES.search(raw) is not None
    if containers > MAX_DEPTH and _too_deep(value):
        raise JsonRefused(f"JSON nested deeper than {MAX_DEPTH} levels")
    if long_digits:
        json.loads(raw, parse_int=_checked_int)  # depth already bounded: no recursion error
    return value


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _checked_int(text: str) -> int:
    number = int(text)
    if not INT_MIN <= number <= INT_MAX:
        raise JsonRefused("integer out of range (at most 64 bits); send it as a string")
    return number
