"""Reading the server's frames: each one checked, so a malformed frame is named, not a KeyError."""

from __future__ import annotations

import json
from typing import Any

from api.client.errors import ProtocolError
from api.client.types import Message

MESSAGE_FIELDS = ("item_id", "seq", "sender", "data", "ts")


def decode(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolError("the server sent a binary frame")
    try:
        frame = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"the server sent a frame that is not JSON: {raw[:200]!r}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ProtocolError(f"the server sent a frame without a type: {raw[:200]!r}")
    return frame


def field(frame: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = frame.get(name)
    # bool is an int in Python, never a seq or a count on the wire.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{frame['type']!r} frame without a valid {name!r}: {frame!r}"[:300])
    return value


def message(frame: dict[str, Any]) -> Message:
    """A `message` frame as the contract's message object (the shape REST answers)."""
    for name in MESSAGE_FIELDS:
        if name not in frame:
            raise ProtocolError(f"'message' frame without {name!r}: {frame!r}"[:300])
    field(frame, "seq", int)
    return {
        "item_id": field(frame, "item_id", str),
        "seq": frame["seq"],
        "sender": field(frame, "sender", str),
        "data": frame["data"],
        "ts": field(frame, "ts", str),
    }


def unpack(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The frames a `batch` frame holds (in order), or the frame itself."""
    if frame["type"] != "batch":
        return [frame]
    inner: list[dict[str, Any]] = field(frame, "frames", list)
    for each in inner:
        if not isinstance(each, dict) or not isinstance(each.get("type"), str):
            raise ProtocolError(f"a batch holds a frame without a type: {each!r}"[:300])
        if each["type"] in ("batch", "ready"):
            raise ProtocolError(f"a batch holds a {each['type']!r} frame")
    return inner


def ack_value(frame: dict[str, Any]) -> int:
    """What an `ack` acknowledges: a state change's `version`, or a publish's `seq`."""
    value: int = field(frame, "version" if "version" in frame else "seq", int)
    return value


def newer_state(frame: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether a `state` frame is to be taken: a snapshot (no `sender`, after each
    subscription) always replaces what was known; a change only when it is newer."""
    version = field(frame, "version", int)
    field(frame, "state", dict)
    if "sender" not in frame or current is None:
        return True
    return bool(version > current["version"])
