"""The `/ws` channel of the AsyncAPI document: many items on one socket."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.realtime import asyncapi_connect as connect
from api.realtime import multiplex_frames as mux
from api.realtime import protocol

# Its own frames, and those it shares with the item channel (by message name).
MODELS: tuple[type[BaseModel], ...] = (*mux.SENT, *mux.RECEIVED)
SHARED_SENT = ("Message", "State", "Pong", "Error")
SHARED_RECEIVED = ("Ping", "Refresh")

DESCRIPTION = (
    "One socket, any number of item subscriptions (up to MAX_SUBSCRIPTIONS, named by "
    "`ready`). Credentials and refusals as on the item channel, without the item: "
    f"`{protocol.FORBIDDEN}` and `{protocol.INVALID_SINCE}` never close this socket (they "
    "answer `subscribe` as errors naming the item), and a ticket limited to an item is "
    f"`{protocol.INVALID_TOKEN}`. Each frame about an item names it (`item_id`); frames "
    "of one item keep the item channel's order, frames of different items interleave. "
    "A subscription ends with `unsubscribed` (`requested`, or `forbidden` when access "
    "is lost); the socket and its other subscriptions stay. Error codes besides the "
    f"item channel's: `{mux.TOO_MANY_SUBSCRIPTIONS}`, `{mux.ITEM_FULL}`."
)


def _name(model: type[BaseModel]) -> str:
    return model.__name__.removesuffix("Frame")


def _refs(names: list[str]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/multiplex/messages/{name}"} for name in names]


SENT = [*(_name(m) for m in mux.SENT), *SHARED_SENT]
RECEIVED = [*(_name(m) for m in mux.RECEIVED), *SHARED_RECEIVED]


def channel() -> dict[str, Any]:
    codes = [
        (code, reason, when)
        for code, reason, when in connect.CLOSE_CODES
        if reason not in (protocol.FORBIDDEN, protocol.INVALID_SINCE, protocol.ITEM_FULL)
    ]
    return {
        "address": "/ws",
        "title": "Many items on one socket",
        "description": DESCRIPTION,
        "x-close-codes": [
            {"code": code, **({"reason": reason} if reason else {}), "when": when}
            for code, reason, when in codes
        ],
        "messages": {
            name: {"$ref": f"#/components/messages/{name}"} for name in [*SENT, *RECEIVED]
        },
        "bindings": {
            "ws": {
                "headers": connect.handshake_bindings(),
                "query": {"type": "object", "properties": {"token": {"type": "string"}}},
            }
        },
    }


def operations() -> dict[str, Any]:
    return {
        "receiveMultiplexFrames": {
            "action": "send",
            "summary": "Frames the server sends on `/ws`.",
            "channel": {"$ref": "#/channels/multiplex"},
            "messages": _refs(SENT),
        },
        "sendMultiplexFrames": {
            "action": "receive",
            "summary": "Frames the server accepts on `/ws`.",
            "channel": {"$ref": "#/channels/multiplex"},
            "messages": _refs(RECEIVED),
        },
    }
