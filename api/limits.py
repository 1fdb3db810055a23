"""Limits at the edge: request bodies, handshake line length, encoded slashes."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Answers 413 to a request whose body exceeds `limit` bytes, declared or streamed.

    The body is read (at most `limit` bytes) before the app runs, so the app never sees
    half of an oversized body and no framework layer can turn the refusal into a 400.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _reject(send)
                return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # http.disconnect: let the app see it
            size += len(message.get("body", b""))
            if size > self.limit:
                await _reject(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send) -> None:
    body = b'{"detail":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# websockets parses the handshake again below uvicorn with 8 KiB lines: a longer request
# line (a 10 kB token in the URL) makes uvicorn drop the reply and the client hang.
# 64 KiB lets such a handshake complete and be refused properly with 1008.
HANDSHAKE_LINE_LIMIT = 64 * 1024


def allow_long_handshake_lines() -> None:
    import websockets.http11

    if "WEBSOCKETS_MAX_LINE_LENGTH" not in os.environ:
        websockets.http11.MAX_LINE_LENGTH = max(
            websockets.http11.MAX_LINE_LENGTH, HANDSHAKE_LINE_LIMIT
        )


class KeepEncodedSlashes:
    """Route on the path with `%2F` kept encoded.

    uvicorn decodes `/items/a%2Fb` to `/items/a/b`, which matches no route (a bare 404,
    or an HTTP 403 for a WebSocket). Kept encoded, `a%2Fb` reaches the item routes as an
    id that fails its pattern: 422 on REST, 1008 `forbidden` on a channel.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] in ("http", "websocket") and raw and b"%2" in raw:
            parts = ENCODED_SLASH.split(raw.decode("latin-1"))
            if len(parts) > 1:
                scope = {**scope, "path": "%2F".join(unquote(p) for p in parts)}
        await self.app(scope, receive, send)


ENCODED_SLASH = re.compile("%2[Ff]")
