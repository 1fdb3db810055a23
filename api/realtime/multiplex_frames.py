"""The frames of `/ws`, one socket for many items: those not already the item socket's.

Each client frame about an item names it by `item_id`; each server frame about one
names it too. Messages and state frames are the item socket's own (they carry
`item_id` already), presence frames get it added (`protocol.naming_item`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StrictBool, StrictInt, TypeAdapter

from api.patterns import ITEM_ID_PATTERN
from api.realtime.protocol import (
    ActionFrame,
    PatchFrame,
    PingFrame,
    Ref,
    RefreshFrame,
    UserInfo,
    _Frame,
    encode,
    parse_with,
)

ItemId = Annotated[str, Field(pattern=ITEM_ID_PATTERN)]

# Error codes beyond the item socket's.
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
ITEM_FULL = "item_full"
# Why a subscription ended.
REQUESTED = "requested"

# Client -> server.


class SubscribeFrame(_Frame):
    """Follow an item: `subscribed`, then its messages (after `since` when given)."""

    type: Literal["subscribe"]
    item_id: ItemId
    since: StrictInt | None = Field(None, ge=0)
    state: StrictBool = Field(False, description="`true`: its state snapshot, then changes.")
    ref: Ref | None = None


class UnsubscribeFrame(_Frame):
    """Stop following an item."""

    type: Literal["unsubscribe"]
    item_id: ItemId
    ref: Ref | None = None


class ItemPublishFrame(_Frame):
    """Store `data` as the item's next message (owner and writers, subscribed or not)."""

    type: Literal["publish"]
    item_id: ItemId
    data: Any
    ref: Ref | None = None


class ItemPatchFrame(PatchFrame):
    """`patch` on the item named (a `document`)."""

    item_id: ItemId


class ItemActionFrame(ActionFrame):
    """`action` on the item named (a game)."""

    item_id: ItemId


MultiplexClientFrame = (
    SubscribeFrame
    | UnsubscribeFrame
    | ItemPublishFrame
    | ItemPatchFrame
    | ItemActionFrame
    | PingFrame
    | RefreshFrame
)
_frame: TypeAdapter[MultiplexClientFrame] = TypeAdapter(
    Annotated[MultiplexClientFrame, Field(discriminator="type")]
)


def parse_multiplex_frame(text: str) -> MultiplexClientFrame:
    """A `/ws` client frame, or `FrameError` (with the `item_id` the frame named)."""
    return parse_with(_frame, text, names_items=True)


# Server -> client.


class MultiplexReadyFrame(_Frame):
    """First frame after acceptance on `/ws`."""

    type: Literal["ready"] = "ready"
    user: UserInfo
    max_subscriptions: int


class SubscribedFrame(_Frame):
    """The answer to `subscribe`; the item's frames follow."""

    type: Literal["subscribed"] = "subscribed"
    item_id: str
    role: Literal["owner", "writer", "reader"]
    last_seq: int
    recovered: bool | None = Field(None, description="Present when `since` was given.")
    ref: str | None = None


class UnsubscribedFrame(_Frame):
    """No frame of the item follows: asked for (`requested`) or access lost (`forbidden`)."""

    type: Literal["unsubscribed"] = "unsubscribed"
    item_id: str
    reason: Literal["requested", "forbidden"]
    ref: str | None = None


class ItemPresenceFrame(_Frame):
    """A user came online on the item (first socket or subscription) or went offline."""

    type: Literal["presence"] = "presence"
    item_id: str
    event: Literal["join", "leave"]
    user: str
    count: int


class ItemAckFrame(_Frame):
    """The answer to `publish`: stored as this seq."""

    type: Literal["ack"] = "ack"
    item_id: str
    ref: str | None = None
    seq: int


class ItemStateAckFrame(_Frame):
    """The answer to `patch` / `action`: stored as this version."""

    type: Literal["ack"] = "ack"
    item_id: str
    ref: str | None = None
    version: int


SENT = (
    MultiplexReadyFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    ItemPresenceFrame,
    ItemAckFrame,
    ItemStateAckFrame,
)
RECEIVED = (SubscribeFrame, UnsubscribeFrame, ItemPublishFrame, ItemPatchFrame, ItemActionFrame)


def ready_frame(user_id: str, username: str, max_subscriptions: int) -> str:
    return encode(
        MultiplexReadyFrame(
            user=UserInfo(id=user_id, username=username), max_subscriptions=max_subscriptions
        )
    )


def unsubscribed_frame(item_id: str, reason: str, ref: str | None = None) -> str:
    body: dict[str, Any] = {"type": "unsubscribed", "item_id": item_id, "reason": reason}
    if ref is not None:
        body["ref"] = ref
    return orjson.dumps(body).decode()
