"""The channel protocol: frame models, close codes and reasons.

These pydantic models parse client frames and document server frames; the AsyncAPI
document is generated from them. Hot-path frames (`message`) are encoded once per
message by the publisher and sent to every socket as the same text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from api import jsoncheck

# Close codes.
POLICY_VIOLATION = 1008
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
NORMAL = 1000

# 1008 reasons, exactly as the contract names them.
MISSING_CREDENTIALS = "missing credentials"
INVALID_TOKEN = "invalid token"  # noqa: S105
TOKEN_EXPIRED = "token expired"  # noqa: S105
INVALID_SESSION = "invalid session"
ORIGIN_NOT_ALLOWED = "origin not allowed"
FORBIDDEN = "forbidden"
INVALID_SINCE = "invalid since"
SESSION_REVOKED = "session revoked"
# The overflow policy: a socket whose queue is full is closed with 1013 and resumes.
SLOW_CONSUMER = "slow consumer"
# Also 1013: messages a socket missed could not be read back; it resumes with `since`.
STORE_UNAVAILABLE = "store unavailable"
BROKER_UNAVAILABLE = "broker unavailable"
# Revocations came too fast to tell whether one concerned a socket being opened.
TRY_AGAIN = "try again"
# Limits, also with 1013: the client may retry later.
TOO_MANY_SOCKETS = "too many sockets"
ITEM_FULL = "item full"

# Error codes in `error` frames.
BAD_REQUEST = "bad_request"
RATE_LIMITED = "rate_limited"
# The store failed: the publish was not acknowledged and may be retried.
UNAVAILABLE = "unavailable"

Ref = Annotated[str, Field(max_length=64)]
F = TypeVar("F")


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# Client -> server.


class PublishFrame(_Frame):
    """Store `data` as the item's next message (owner and writers)."""

    type: Literal["publish"]
    data: Any
    ref: Ref | None = None


class PingFrame(_Frame):
    """Ask for a `pong`."""

    type: Literal["ping"]


class RefreshFrame(_Frame):
    """Replace the socket's access token with a fresh one of the same user."""

    type: Literal["refresh"]
    token: str = Field(max_length=4096)


class PatchFrame(_Frame):
    """Apply JSON Patch operations to a `document` item's state (owner and writers)."""

    type: Literal["patch"]
    ops: list[Any]
    ref: Ref | None = None


class ActionFrame(_Frame):
    """Make a move in a game item, such as `{"move": 4}` in `tictactoe`."""

    type: Literal["action"]
    action: Any
    ref: Ref | None = None


ItemClientFrame = PublishFrame | PingFrame | RefreshFrame | PatchFrame | ActionFrame
ClientFrame = Annotated[ItemClientFrame, Field(discriminator="type")]
_client_frame: TypeAdapter[ItemClientFrame] = TypeAdapter(ClientFrame)
# Named by `item_id` on `/ws`: an error frame echoes it (a string, up to this long).
ECHOED_ITEM_ID = 256


class FrameError(ValueError):
    """A client frame that cannot be acted on; `ref` is echoed when it was valid, and on
    `/ws` the `item_id` the frame named."""

    def __init__(self, detail: str, ref: str | None = None, item_id: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.ref = ref
        self.item_id = item_id


def parse_with(adapter: TypeAdapter[F], text: str, *, names_items: bool = False) -> F:
    """A client frame of the union `adapter` validates, or `FrameError`."""
    try:
        raw = jsoncheck.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError("invalid JSON") from exc
    except jsoncheck.JsonRefused as exc:
        raise FrameError(str(exc)) from exc
    if not isinstance(raw, dict):
        raise FrameError("a frame is a JSON object")
    ref = raw.get("ref")
    valid_ref = ref if isinstance(ref, str) and len(ref) <= 64 else None
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        named = raw.get("item_id") if names_items else None
        if not isinstance(named, str) or len(named) > ECHOED_ITEM_ID:
            named = None
        raise FrameError(f"{where}: {first['msg']}", valid_ref, named) from exc


def parse_client_frame(text: str) -> ItemClientFrame:
    """A frame of an item socket (the monitor's too)."""
    return parse_with(_client_frame, text)


# Server -> client.


class UserInfo(_Frame):
    id: str
    username: str


class ReadyFrame(_Frame):
    """First frame after acceptance."""

    type: Literal["ready"] = "ready"
    item_id: str
    user: UserInfo
    role: Literal["owner", "writer", "reader"]
    last_seq: int
    recovered: bool | None = Field(None, description="Present when `since` was given.")
    batch: bool | None = Field(None, description="`true` when `batch=1` was given.")


class MessageFrame(_Frame):
    """A stored message."""

    type: Literal["message"] = "message"
    item_id: str
    seq: int
    sender: str
    data: Any
    ts: str


class PresenceFrame(_Frame):
    type: Literal["presence"] = "presence"
    event: Literal["join", "leave"]
    user: str
    count: int


class AckFrame(_Frame):
    type: Literal["ack"] = "ack"
    ref: str | None = None
    seq: int


class PongFrame(_Frame):
    type: Literal["pong"] = "pong"


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    code: str
    detail: str
    ref: str | None = None
    item_id: str | None = Field(None, description="On `/ws`: the item the frame named.")


class BatchFrame(_Frame):
    """Only with `?batch=1`: consecutive frames sent as one, in order."""

    type: Literal["batch"] = "batch"
    frames: list[MessageFrame | PresenceFrame | AckFrame | PongFrame | ErrorFrame] = Field(
        min_length=2
    )


class StatsFrame(_Frame):
    """Sent on `/monitor/ws` every `interval` seconds."""

    type: Literal["stats"] = "stats"
    ts: str
    cpu_percent: float
    memory_percent: float
    connections: int
    messages_per_s: float


SERVER_FRAMES = (
    ReadyFrame,
    MessageFrame,
    PresenceFrame,
    AckFrame,
    PongFrame,
    ErrorFrame,
    BatchFrame,
)
CLIENT_FRAMES = (PublishFrame, PingFrame, RefreshFrame)

PONG = '{"type":"pong"}'


_OPTIONAL = ("ref", "recovered", "batch", "item_id")


def encode(frame: _Frame) -> str:
    body = frame.model_dump()
    # Optional fields are left out when absent; `data` may legitimately be null.
    for name in _OPTIONAL:
        if name in body and body[name] is None:
            del body[name]
    return orjson.dumps(body).decode()


def ack_frame(ref: str | None, seq: int, item_id: str | None = None) -> str:
    """`AckFrame` (with `item_id` on `/ws`), encoded without building the model: one per
    published message."""
    body: dict[str, object] = {"type": "ack"}
    if item_id is not None:
        body["item_id"] = item_id
    if ref is not None:
        body["ref"] = ref
    body["seq"] = seq
    return orjson.dumps(body).decode()


def error_frame(code: str, detail: str, ref: str | None = None, item_id: str | None = None) -> str:
    """`item_id` on `/ws`, when the refused frame named one."""
    return encode(ErrorFrame(code=code, detail=detail, ref=ref, item_id=item_id))


_PRESENCE = '{"type":"presence",'


def naming_item(frame: str, item_id: str) -> str:
    """A presence frame as `/ws` sends it, naming its item (item sockets' do not: it is
    encoded once for all of them); other frames as they are."""
    if not frame.startswith(_PRESENCE):
        return frame
    return f'{_PRESENCE}"item_id":{orjson.dumps(item_id).decode()},{frame[len(_PRESENCE) :]}'
