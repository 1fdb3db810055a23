"""JSON Patch's common case, applied without the `jsonpatch` library's per-operation cost.

Most patches are a few `add` / `replace` / `remove` / `test` operations on plain paths
(`/a/b/0`, `/list/-`). The library builds pointer and operation objects and deep-copies
the document for every patch: several times what storing the change costs. `apply_simple`
applies such a patch to a copy made through orjson (a fraction of `deepcopy`'s cost),
and gives up (`None`) at the first thing it does not handle plainly — another operation,
an escaped or root path, a member or index that is not there, a failed `test`, anything
unusual at all — so that the library then applies the patch from the start and decides
every refusal and its message. What it does apply, it applies exactly as RFC 6902 and
the library do.
"""

from __future__ import annotations

from typing import Any

import orjson

_SIMPLE = frozenset({"add", "replace", "remove", "test"})
_MEMBERS = frozenset({"op", "path", "value"})
_CANONICAL = orjson.OPT_SORT_KEYS


class _GiveUp(Exception):
    pass


def apply_simple(state: dict[str, Any], ops: list[Any]) -> dict[str, Any] | None:
    """The patched copy of `state`, or None for the library to apply `ops` instead."""
    for op in ops:
        if (
            type(op) is not dict
            or op.get("op") not in _SIMPLE
            or not _MEMBERS.issuperset(op)
            or ("value" not in op) != (op["op"] == "remove")
        ):
            return None
        path = op.get("path")
        if type(path) is not str or not path.startswith("/") or "~" in path:
            return None
    try:
        doc = orjson.loads(orjson.dumps(state))
        for op in ops:
            _one(doc, op)
    except (_GiveUp, TypeError, orjson.JSONEncodeError):
        return None
    return doc  # type: ignore[no-any-return]


def _one(doc: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = op["path"][1:].split("/")
    container: Any = doc
    for part in parents:
        container = _child(container, part)
    kind = op["op"]
    if kind == "test":
        if not _same(_child(container, last), op["value"]):
            raise _GiveUp  # the library says how it differs
        return
    if type(container) is dict:
        if kind == "add":
            container[last] = _own(op["value"])
            return
        if last not in container:
            raise _GiveUp
        if kind == "replace":
            container[last] = _own(op["value"])
        else:
            del container[last]
        return
    if type(container) is not list:
        raise _GiveUp
    if kind == "add" and last == "-":
        container.append(_own(op["value"]))
        return
    index = _index(last)
    size = len(container)
    if kind == "add" and index <= size:
        container.insert(index, _own(op["value"]))
    elif index >= size:
        raise _GiveUp
    elif kind == "replace":
        container[index] = _own(op["value"])
    else:
        del container[index]


def _child(container: Any, part: str) -> Any:
    if type(container) is dict:
        if part not in container:
            raise _GiveUp
        return container[part]
    if type(container) is list:
        index = _index(part)
        if index >= len(container):
            raise _GiveUp
        return container[index]
    raise _GiveUp


def _index(part: str) -> int:
    """An array index as RFC 6901 writes it: digits, no leading zero."""
    if not part.isdigit() or not part.isascii() or (part[0] == "0" and len(part) > 1):
        raise _GiveUp
    return int(part)


def _own(value: Any) -> Any:
    """A container from the patch gets a copy of its own: a later operation may change
    it in the document, and the patch must stay as sent should the library take over."""
    if type(value) is dict or type(value) is list:
        return orjson.loads(orjson.dumps(value))
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON texts, keys sorted: what is equal here is equal for the library too
    (1 and 1.0, or true and 1, are left to it)."""
    return orjson.dumps(a, option=_CANONICAL) == orjson.dumps(b, option=_CANONICAL)
