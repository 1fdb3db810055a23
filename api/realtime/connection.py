"""An accepted socket, served to its end: one state machine, one send path, a bounded close.

The handshake's checks decide whether a socket is accepted; from then on the socket is
a `Connection`: frames are read here and handed to a handler, every frame out (the
`ready` frame and the close included) goes through the socket's outbox, and a close,
once requested, has `close_grace` seconds to go out before the socket is let go (a
peer that stopped reading cannot hold it). The reader and the outbox's waiting sends
run under one task group, so nothing of the socket outlives `serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from api.realtime import protocol
from api.realtime.outbox import Outbox

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# A client's text frame, handled; a close the handler wants is requested on the outbox.
Handle = Callable[[str], Awaitable[None]]

# How long a closing socket may take to send its close frame and hear back.
CLOSE_GRACE = 5.0


class State(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    __slots__ = ("_closed_by", "_deadline", "_group", "_receive", "_send", "limit", "state")

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit  # largest text frame accepted, in bytes
        self.state = State.HANDSHAKING
        self._deadline: asyncio.Timeout | None = None
        self._group: asyncio.TaskGroup | None = None
        self._closed_by: Callable[[Outbox], None] | None = None

    # The one send path, handed to the outbox.

    def send_text(self, text: str) -> Awaitable[None]:
        return self._send({"type": "websocket.send", "text": text})

    async def send_close(self, code: int, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        # The peer may be gone already; its disconnect ends the reader.
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task of this socket's (its outbox's waiting send), ended with it."""
        if self._group is not None:
            return self._group.create_task(coro, name=name)
        return asyncio.get_running_loop().create_task(coro, name=name)

    def watch(self, outbox: Outbox, on_close: Callable[[Outbox], None]) -> None:
        """Once a close of `outbox` is requested, tell `on_close` and bound the close."""
        self._closed_by = on_close
        outbox.on_close = self._closing

    def _closing(self, outbox: Outbox) -> None:
        if self.state is State.OPEN or self.state is State.HANDSHAKING:
            self.state = State.CLOSING
        if self._closed_by is not None:
            self._closed_by(outbox)
        if self._deadline is not None and self._deadline.when() is None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + CLOSE_GRACE)

    async def serve(
        self,
        outbox: Outbox,
        first: tuple[str, ...],
        handle: Handle,
        opened: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Send the frames of `first`, then serve the socket until it is closed or the peer leaves;
        `opened` runs once the first frame is on its way (presence, say)."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    async with asyncio.timeout(None) as deadline:
                        self._deadline = deadline
                        if self.state is State.HANDSHAKING:
                            self.state = State.OPEN
                        else:  # closed before it opened: the close goes out alone
                            deadline.reschedule(asyncio.get_running_loop().time() + CLOSE_GRACE)
                        outbox.start(first)
                        if opened is not None and outbox.closing is None:
                            await opened()
                        ending = await self._read(outbox, handle)
                        if ending is not None:
                            outbox.request_close(*ending)
                        if outbox.closing is not None:
                            await outbox.wait_sent()
                except TimeoutError:
                    pass  # the close did not go out in time: let go of the socket
                finally:
                    outbox.stop()
        finally:
            self.state = State.CLOSED
            self._group = None
            self._deadline = None

    async def _read(self, outbox: Outbox, handle: Handle) -> tuple[int, str] | None:
        """Hand each text frame to `handle`: a close (1003, 1009) for a frame breaking
        the protocol's rules, None when the peer left."""
        limit = self.limit
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is None:
                return protocol.UNSUPPORTED_DATA, "binary frames are not supported"
            # Characters never outnumber bytes; encode only when it could matter.
            if len(text) > limit // 4 and len(text.encode()) > limit:
                return protocol.MESSAGE_TOO_BIG, "message too big"
            if outbox.closing is None:
                await handle(text)
