"""Helpers for `/ws` tests: one socket, many items."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.servers import LiveServer
from tests.support import TEXT, TIMEOUT, User, read_until, recv


def ws_url(base: str, **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base}/ws" + (f"?{qs}" if qs else "")


async def open_ws(
    server: LiveServer | str, token: str | None = None, **kwargs: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open `/ws` (with `?token=` when given) and read its `ready` frame."""
    base = server if isinstance(server, str) else server.ws_url
    query = dict(kwargs.pop("query", {}))
    if token is not None:
        query["token"] = token
    kwargs.setdefault("open_timeout", TIMEOUT)
    ws = await connect(ws_url(base, **query), **kwargs)
    try:
        frame = await recv(ws)
    except BaseException:
        await ws.close()
        raise
    assert frame["type"] == "ready", frame
    return ws, frame


async def send(ws: ClientConnection, frame_type: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": frame_type, **fields}))


async def subscribe(ws: ClientConnection, item_id: str, **fields: Any) -> dict[str, Any]:
    """Subscribe and read up to the answer (`subscribed`, or the error naming the item);
    the answer (frames of other items before it are dropped)."""
    return (await subscribing(ws, item_id, **fields))[-1]


async def subscribing(ws: ClientConnection, item_id: str, **fields: Any) -> list[dict[str, Any]]:
    """Subscribe; every frame read up to and including the answer."""
    await send(ws, "subscribe", item_id=item_id, **fields)
    return await read_until(
        ws, lambda f: f["type"] in ("subscribed", "error") and f.get("item_id") == item_id
    )


def ready_frame(user: User, max_subscriptions: int = 100) -> dict[str, Any]:
    return {
        "type": "ready",
        "user": {"id": user.id, "username": user.username},
        "max_subscriptions": max_subscriptions,
    }


def subscribed_frame(
    item_id: str,
    role: str,
    last_seq: int,
    recovered: bool | None = None,
    ref: str | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "subscribed",
        "item_id": item_id,
        "role": role,
        "last_seq": last_seq,
    }
    if recovered is not None:
        frame["recovered"] = recovered
    if ref is not None:
        frame["ref"] = ref
    return frame


def item_error(code: str, item_id: str | None, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": TEXT}
    if ref is not None:
        frame["ref"] = ref
    if item_id is not None:
        frame["item_id"] = item_id
    return frame


def presence_of(item_id: str, event: str, user: str, count: int) -> dict[str, Any]:
    return {"type": "presence", "item_id": item_id, "event": event, "user": user, "count": count}


def unsubscribed_frame(item_id: str, reason: str, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "unsubscribed", "item_id": item_id, "reason": reason}
    if ref is not None:
        frame["ref"] = ref
    return frame
