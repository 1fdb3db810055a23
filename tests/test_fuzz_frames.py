"""Property-based fuzzing of `protocol.parse_client_frame` and
`multiplex_frames.parse_multiplex_frame`, the sockets' only parsers of client input:
whatever arrives, they return a frame model or raise `FrameError`."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.patterns import ITEM_ID_RE
from api.realtime import multiplex_frames as mux
from api.realtime import protocol

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

FRAME_TYPES = (
    protocol.PublishFrame,
    protocol.PingFrame,
    protocol.RefreshFrame,
    protocol.PatchFrame,
    protocol.ActionFrame,
)
MUX_TYPES = (
    mux.SubscribeFrame,
    mux.UnsubscribeFrame,
    mux.ItemPublishFrame,
    mux.ItemPatchFrame,
    mux.ItemActionFrame,
    protocol.PingFrame,
    protocol.RefreshFrame,
)

# Any JSON value (what orjson can round-trip: finite floats, 64-bit integers).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)
# Values for the fields the parser cares about, valid or not.
types = st.one_of(
    st.sampled_from(["publish", "ping", "refresh", "pong", "patch", "action", ""]), json_values
)
refs = st.one_of(
    st.text(max_size=64), st.text(min_size=65, max_size=100), json_values, st.just("r" * 64)
)
tokens = st.one_of(st.text(max_size=100), st.text(min_size=4097, max_size=4200), json_values)
frame_dicts = st.fixed_dictionaries(
    {},
    optional={
        "type": types,
        "data": json_values,
        "ref": refs,
        "token": tokens,
        "extra": json_values,
    },
)


def check(text: str) -> protocol.ItemClientFrame | None:
    """Parse; anything but a frame model or a FrameError fails the property."""
    try:
        frame = protocol.parse_client_frame(text)
    except protocol.FrameError as exc:
        assert isinstance(exc.detail, str) and exc.detail
        assert exc.ref is None or (isinstance(exc.ref, str) and len(exc.ref) <= 64)
        return None
    assert isinstance(frame, FRAME_TYPES)
    return frame


@FUZZ
@given(st.text())
@example("")
@example("\x00")
@example("\ud800")
@example("[" * 5000)
@example('{"type":"publish","data":NaN}')
@example('{"type":"publish","data":1e999}')
@example('{"type":"publish","data":"\\ud800"}')
@example('{"type":"publish","data":1,"type":"ping"}')
def test_arbitrary_text_is_a_frame_or_a_frame_error(text: str) -> None:
    check(text)


@FUZZ
@given(json_values)
def test_arbitrary_json_is_a_frame_or_a_frame_error(value: Any) -> None:
    check(orjson.dumps(value).decode())


@FUZZ
@given(frame_dicts)
def test_frame_shaped_objects_parse_to_their_type_or_fail_cleanly(raw: dict[str, Any]) -> None:
    frame = check(orjson.dumps(raw).decode())
    if frame is None:
        return
    assert frame.type == raw["type"]
    if isinstance(frame, protocol.PublishFrame):
        assert "data" in raw
        assert frame.ref == raw.get("ref")
    if isinstance(frame, protocol.RefreshFrame):
        assert frame.token == raw["token"]


@FUZZ
@given(json_values, st.one_of(st.none(), st.text(max_size=64)))
def test_a_publish_round_trips_its_data(data: Any, ref: str | None) -> None:
    raw: dict[str, Any] = {"type": "publish", "data": data}
    if ref is not None:
        raw["ref"] = ref
    frame = protocol.parse_client_frame(orjson.dumps(raw).decode())
    assert isinstance(frame, protocol.PublishFrame)
    assert frame.ref == ref
    # The data is stored and sent as orjson encodes it: the same JSON back.
    assert orjson.loads(orjson.dumps(frame.data)) == orjson.loads(orjson.dumps(data))
    assert _same_json(frame.data, data)


def _same_json(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 and True from 1, as JSON does."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and (a == b or (math.isnan(a) and math.isnan(b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


@FUZZ
@given(refs, st.sampled_from(["nonsense", None, 5]), st.booleans())
def test_ref_is_echoed_only_when_a_string_of_at_most_64(
    ref: Any, frame_type: Any, with_data: bool
) -> None:
    """An invalid frame's error carries its `ref` exactly when the ref is a valid one."""
    raw: dict[str, Any] = {"ref": ref}
    if frame_type is not None:
        raw["type"] = frame_type
    if with_data:
        raw["data"] = 1
    try:
        protocol.parse_client_frame(json.dumps(raw))
    except protocol.FrameError as exc:
        valid = isinstance(ref, str) and len(ref) <= 64
        assert exc.ref == (ref if valid else None)
    else:
        raise AssertionError("a frame without a valid type was accepted")


@FUZZ
@given(refs)
def test_ref_of_a_publish_missing_its_data(ref: Any) -> None:
    try:
        protocol.parse_client_frame(json.dumps({"type": "publish", "ref": ref}))
    except protocol.FrameError as exc:
        valid = isinstance(ref, str) and len(ref) <= 64
        assert exc.ref == (ref if valid else None)
    else:
        raise AssertionError("a publish without data was accepted")


@FUZZ
@given(st.text(min_size=65, max_size=200), json_values)
def test_a_publish_with_an_overlong_ref_is_refused_without_echo(ref: str, data: Any) -> None:
    try:
        protocol.parse_client_frame(json.dumps({"type": "publish", "data": data, "ref": ref}))
    except protocol.FrameError as exc:
        assert exc.ref is None
    else:
        raise AssertionError("a ref over 64 characters was accepted")


# `/ws`: the same guarantees, and the `item_id` a refused frame named is echoed.

mux_types = st.one_of(
    st.sampled_from(["subscribe", "unsubscribe", "publish", "patch", "action", "ping", "x"]),
    json_values,
)
item_ids = st.one_of(
    st.from_regex(ITEM_ID_RE, fullmatch=True),
    st.text(max_size=80),
    st.text(min_size=257, max_size=300),
    json_values,
)
sinces = st.one_of(st.integers(min_value=-5, max_value=2**63 - 1), json_values)
mux_dicts = st.fixed_dictionaries(
    {},
    optional={
        "type": mux_types,
        "item_id": item_ids,
        "since": sinces,
        "state": st.one_of(st.booleans(), json_values),
        "data": json_values,
        "ops": st.one_of(st.lists(json_values, max_size=3), json_values),
        "action": json_values,
        "ref": refs,
    },
)


@FUZZ
@given(st.one_of(mux_dicts, json_values.map(lambda v: {"value": v})))
def test_ws_frames_parse_to_their_type_or_fail_naming_their_item(raw: dict[str, Any]) -> None:
    try:
        frame = mux.parse_multiplex_frame(orjson.dumps(raw).decode())
    except protocol.FrameError as exc:
        assert isinstance(exc.detail, str) and exc.detail
        assert exc.ref is None or (isinstance(exc.ref, str) and len(exc.ref) <= 64)
        named = raw.get("item_id")
        echoed = isinstance(named, str) and len(named) <= protocol.ECHOED_ITEM_ID
        assert exc.item_id == (named if echoed else None)
        return
    assert isinstance(frame, MUX_TYPES)
    assert frame.type == raw["type"]
    item_id = getattr(frame, "item_id", None)
    if item_id is not None:
        assert item_id == raw["item_id"] and ITEM_ID_RE.fullmatch(item_id)
    if isinstance(frame, mux.SubscribeFrame):
        since = raw.get("since")
        assert frame.since == since
        assert since is None or (type(since) is int and since >= 0)
        assert frame.state is raw.get("state", False)


@FUZZ
@given(st.text())
@example('{"type":"subscribe","item_id":"a","since":1e999}')
@example('{"type":"subscribe","item_id":"a","since":99999999999999999999999}')
def test_ws_arbitrary_text_is_a_frame_or_a_frame_error(text: str) -> None:
    try:
        frame = mux.parse_multiplex_frame(text)
    except protocol.FrameError as exc:
        assert isinstance(exc.detail, str) and exc.detail
        return
    assert isinstance(frame, MUX_TYPES)
