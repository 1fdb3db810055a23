"""A response's head and body in one write: one system call per small response, not two.

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, and its body when the app sends `http.response.body`: two
`write` calls, which on uvloop are two `send` system calls, since each is tried at
once. For the small JSON answers of this API the second costs about as much as the
first (the REST publish's profile: uvicorn's `send` was a fifth of the request).

`HeldHead` stands between one connection's response cycles and its transport: it
keeps the head back until the body follows, then writes both together. A body that
does not follow in the same turn of the event loop (a streamed response that awaits
something first) does not hold the head longer: it is written at the end of the turn,
or as soon as the response is complete (a HEAD response has no body to wait for).
A large body is written on its own rather than copied behind the head. Everything
else passes straight through.
"""

from __future__ import annotations

import asyncio
from typing import Any

# Beyond this a body is not copied to join its head: the copy would cost more than the
# system call it saves.
JOIN_LIMIT = 64 * 1024

CONTINUE = b"HTTP/1.1 100 "


class HeldHead:
    """The transport as a response cycle sees it (only `write` differs)."""

    __slots__ = ("_expect_head", "_flush_handle", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._expect_head = False
        self._held: bytes | None = None
        self._flush_handle: asyncio.Handle | None = None

    def expect_head(self) -> None:
        """A response cycle starts: its first write is a head."""
        self._expect_head = True

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._cancel_flush()
            if len(data) <= JOIN_LIMIT:
                self._send(held + data)
            else:
                self._send(held)
                self._send(data)
        elif self._expect_head and not data.startswith(CONTINUE):  # "100 Continue": now
            self._expect_head = False
            self._held = data
            self._flush_handle = self._loop.call_soon(self.flush)
        else:
            self._send(data)

    def flush(self) -> None:
        """Write a held head now (before anything else is written to the connection)."""
        self._cancel_flush()
        held, self._held = self._held, None
        if held is not None:
            self._send(held)

    def _send(self, data: bytes) -> None:
        try:
            self._transport.write(data)
        except RuntimeError:
            # Closed, or its end already sent (a refused request pipelined behind this
            # one): nothing more can go out. Dropped, as for a client that has left;
            # raised, it would be logged as an error of the app's or of a callback.
            return

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def _cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, …: the transport's own.
        return getattr(self._transport, name)
