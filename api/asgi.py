"""The ASGI server's own `send`, kept for the channels' hot path.

Every frame sent through Starlette's `WebSocket.send_text` passes a state check and two
wrapper coroutines on its way to the server; with a thousand sockets on an item that is
a sizeable share of each message's cost. The outermost middleware keeps the server's
`send` in the scope so that outgoing frames of an accepted socket go to it directly.
Accepting and closing still go through Starlette, which tracks the socket's state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE_KEY = "item_channels.server_send"


class KeepServerSend:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SCOPE_KEY] = send
        await self.app(scope, receive, send)


def text_sender(
    scope: Scope, fallback: Callable[[str], Awaitable[None]]
) -> Callable[[str], Awaitable[None]]:
    """A function sending a text frame straight to the server (`fallback` without it)."""
    send: Send | None = scope.get(SCOPE_KEY)
    if send is None:
        return fallback

    def send_text(text: str) -> Awaitable[None]:
        return send({"type": "websocket.send", "text": text})

    return send_text
