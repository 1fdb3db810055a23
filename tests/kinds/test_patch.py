"""The JSON Patch fast path agrees with the `jsonpatch` library on every patch it takes,
and leaves every other one (and every refusal) to the library."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.kinds import Actor, Conflict, Invalid, get_kind
from api.kinds.patch import apply_simple

document = get_kind("document")
OWNER = Actor("alice", "owner")

KEYS = st.sampled_from(["a", "b", "c", "0", "1", "-", ""])
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2, width=16) | KEYS
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
DOCS = st.dictionaries(KEYS, JSON, max_size=4)
TOKENS = st.sampled_from(["a", "b", "c", "0", "1", "2", "-", "01", "", "x"])
PATHS = st.lists(TOKENS, min_size=1, max_size=3).map(lambda ts: "/" + "/".join(ts))


@st.composite
def operations(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["add", "replace", "remove", "test"]))
    body: dict[str, Any] = {"op": op, "path": draw(PATHS)}
    if op != "remove":
        body["value"] = draw(JSON)
    return body


def by_library(state: dict[str, Any], ops: list[Any]) -> Any:
    try:
        return ("ok", jsonpatch.JsonPatch(ops).apply(state, in_place=False))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        return ("refused", type(exc).__name__)


@settings(max_examples=400, deadline=None)
@given(DOCS, st.lists(operations(), min_size=1, max_size=4))
def test_the_fast_path_agrees_with_the_library(state: dict[str, Any], ops: list[Any]) -> None:
    before = copy.deepcopy(state)
    sent = copy.deepcopy(ops)
    fast = apply_simple(state, ops)
    assert state == before and ops == sent  # neither the state nor the patch is touched
    expected = by_library(state, ops)
    if fast is not None:
        assert expected == ("ok", fast)
        # Same JSON, in the same member order.
        assert orjson.dumps(fast) == orjson.dumps(expected[1])


def test_common_patches_take_the_fast_path() -> None:
    state = {"d": {"i": 1}, "log": [1, 2], "n": 1}
    ops = [
        {"op": "test", "path": "/n", "value": 1},
        {"op": "add", "path": "/d", "value": {"i": 2, "t": 1.5}},
        {"op": "add", "path": "/log/-", "value": 3},
        {"op": "add", "path": "/log/0", "value": 0},
        {"op": "replace", "path": "/log/1", "value": "one"},
        {"op": "remove", "path": "/n"},
        {"op": "add", "path": "/d/k", "value": [1]},
        {"op": "add", "path": "/d/k/-", "value": 2},
    ]
    result = apply_simple(state, ops)
    assert result == {"d": {"i": 2, "t": 1.5, "k": [1, 2]}, "log": [0, "one", 2, 3]}
    assert ops[6]["value"] == [1]  # the patch's own value was copied, not changed


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "move", "from": "/a", "path": "/b"}],
        [{"op": "copy", "from": "/a", "path": "/b"}],
        [{"op": "add", "path": "/~1slash", "value": 1}],
        [{"op": "replace", "path": "", "value": {}}],
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "test", "path": "/a", "value": 1.0}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "add", "path": "/list/5", "value": 1}],
        [{"op": "add", "path": "/list/01", "value": 1}],
        [{"op": "add", "path": "/a", "value": 1, "extra": True}],
        [{"op": "add", "path": "/a"}],
    ],
)
def test_anything_unusual_is_left_to_the_library(ops: list[Any]) -> None:
    assert apply_simple({"a": 1, "list": [0]}, ops) is None


def test_the_document_kind_refuses_as_before() -> None:
    state = {"a": 1}
    with pytest.raises(Conflict, match="test failed"):
        document.apply(state, [{"op": "test", "path": "/a", "value": 2}], OWNER)
    with pytest.raises(Invalid):
        document.apply(state, [{"op": "remove", "path": "/missing"}], OWNER)
    assert document.apply(state, [{"op": "add", "path": "/b", "value": 2}], OWNER) == {
        "a": 1,
        "b": 2,
    }
    assert state == {"a": 1}
