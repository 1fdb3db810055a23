"""The channel protocol: frame models, close codes and reasons.

These pydantic models parse client frames and document server frames; the AsyncAPI
document is generated from them. Hot-path frames (`message`) are encoded once per
message by the publisher and sent to every socket as the same text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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


ClientFrame = Annotated[PublishFrame | PingFrame | RefreshFrame, Field(discriminator="type")]
_client_frame: TypeAdapter[PublishFrame | PingFrame | RefreshFrame] = TypeAdapter(ClientFrame)


class FrameError(ValueError):
    """A client frame that cannot be acted on; `ref` is echoed when it was valid."""

    def __init__(self, detail: str, ref: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.ref = ref


def parse_client_frame(text: str) -> PublishFrame | PingFrame | RefreshFrame:
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
        return _client_frame.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        raise FrameError(f"{where}: {first['msg']}", valid_ref) from exc


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


_OPTIONAL = ("ref", "recovered", "batch")


def encode(frame: _Frame) -> str:
    body = frame.model_dump()
    # Optional fields are left out when absent; `data` may legitimately be null.
    for name in _OPTIONAL:
        if name in body and body[name] is None:
            del body[name]
    return orjson.dumps(body).decode()


def ack_frame(ref: str | None, seq: int) -> str:
    """`AckFrame`, encoded without building the model: one per published message."""
    body = {"type": "ack", "seq": seq} if ref is None else {"type": "ack", "ref": ref, "seq": seq}
    return orjson.dumps(body).decode()


def error_frame(code: str, detail: str, ref: str | None = None) -> str:
    return encode(ErrorFrame(code=code, detail=detail, ref=ref))
