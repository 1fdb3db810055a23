"""Reading client frames, the same way on every socket of the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import WebSocket

from api.auth.credentials import TokenOfAnotherUser
from api.errors import AuthFailure
from api.realtime import protocol

# What ends a socket's reading: a close to send, or None when the peer went away.
Ending = tuple[int, str] | None


async def next_text(websocket: WebSocket, limit: int) -> str | Ending:
    """The next text frame; a close (1003, 1009) for a frame breaking the protocol's
    rules; None when the peer left."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        return protocol.UNSUPPORTED_DATA, "binary frames are not supported"
    # Characters never outnumber bytes; encode only when it could matter.
    if len(text) > limit // 4 and len(text.encode()) > limit:
        return protocol.MESSAGE_TOO_BIG, "message too big"
    return text


async def read_frames(
    websocket: WebSocket, limit: int, handle: Callable[[str], Awaitable[None]]
) -> Ending:
    """Hand each text frame to `handle` until the peer leaves or breaks a rule."""
    while True:
        text = await next_text(websocket, limit)
        if not isinstance(text, str):
            return text
        await handle(text)


def refusal_code(exc: AuthFailure) -> str:
    """The `error` code answering a refused `refresh` frame."""
    return protocol.FORBIDDEN if isinstance(exc, TokenOfAnotherUser) else protocol.BAD_REQUEST
