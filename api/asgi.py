"""An accepted socket is served after FastAPI's call has returned, on the server's own
`receive` and `send`.

The route runs the handshake's checks (its `Depends`) and accepts or refuses; what
serves an accepted socket is a coroutine it hands to the outermost ASGI layer here.
That layer awaits it once the FastAPI call has returned, with the keys routing and
dependency injection added to the scope removed, so none of the request machinery
(request objects, dependency state, exit stacks, middleware wrappers) stays alive
for the socket's life; frames go to the server directly, without Starlette's
per-frame state checks and wrapper coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE_KEY = "item_channels.handoff"
Serve = Callable[[Receive, Send], Awaitable[None]]


class Handoff:
    __slots__ = ("serve",)

    def __init__(self) -> None:
        self.serve: Serve | None = None


class ServeAfterHandshake:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        handoff = Handoff()
        given = dict(scope)
        scope[SCOPE_KEY] = handoff
        await self.app(scope, receive, send)
        serve, handoff.serve = handoff.serve, None
        if serve is not None:
            # The server keeps the scope for the socket's life: drop what routing and
            # dependency injection added to it (rebuilt, as a dict never shrinks).
            scope.clear()
            scope.update(given)
            del given, handoff
            await serve(receive, send)


async def hand_off(scope: Scope, serve: Serve, receive: Receive, send: Send) -> None:
    """Have `serve` run after the application's call (at once, without the layer above)."""
    handoff: Handoff | None = scope.get(SCOPE_KEY)
    if handoff is None:
        await serve(receive, send)
    else:
        handoff.serve = serve
