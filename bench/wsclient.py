"""WebSocket clients: a lean subscriber, and the library's asyncio client for publishers.

The library's asyncio client costs a task wake-up and a queue per frame; with thousands
of subscribers on a 2-core machine the clients, not the server, would set the pace. The
subscriber is websockets' Sans-I/O `ClientProtocol` on an asyncio protocol instead: it
parses frames with the same library and hands each text frame to a callback right from
`data_received`. Pings are answered and the closing handshake is done by
the library; `pause()` stops reading from the socket altogether (a stalled client).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

CLOSE_TIMEOUT = 2.0
MAX_SIZE = 2**20


class Subscription(asyncio.Protocol):
    def __init__(self, url: str) -> None:
        self.ws = ClientProtocol(parse_uri(url), max_size=MAX_SIZE)
        self.on_text: Callable[[bytes], None] | None = None
        loop = asyncio.get_running_loop()
        self.first: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    if not self.first.done():
                        self.first.set_result(bytes(event.data))
                    elif self.on_text is not None:
                        self.on_text(event.data)  # type: ignore[arg-type]
            elif (
                isinstance(event, Response)
                and self.ws.handshake_exc is not None
                and not self.first.done()
            ):
                self.first.set_exception(self.ws.handshake_exc)
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
        if not self.first.done():
            self.first.set_exception(ConnectionError(f"closed before ready ({self.close_code})"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    # Control

    def send_text(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self._flush()

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    async def close(self, code: int = 1000) -> None:
        """The closing handshake, bounded; the connection is aborted if it drags on."""
        if self.transport is None or self.lost.done():
            return
        with contextlib.suppress(Exception):
            self.resume()
            self.ws.send_close(code)
            self._flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.lost), CLOSE_TIMEOUT)
        self.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


async def subscribe(
    url: str, within: float, *, rcvbuf: int = 0, mss: int = 0
) -> tuple[Subscription, bytes]:
    """An open subscription and its first frame (raw JSON bytes).

    `rcvbuf` and `mss` make a slow link: a small receive window and small segments (with
    which the server's kernel also keeps a small send buffer for this connection)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if mss:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        _, sub = await loop.create_connection(lambda: Subscription(url), sock=sock)
        try:
            first = await sub.first
        except BaseException:
            sub.abort()
            raise
    return sub, first


async def open_client(url: str, within: float) -> tuple[ClientConnection, dict[str, Any]]:
    """The library's asyncio client (for publishers) and its first frame, `ready`."""
    async with asyncio.timeout(within):
        ws = await connect(
            url,
            compression=None,
            proxy=None,
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT,
            open_timeout=within,
            max_size=MAX_SIZE,
        )
        try:
            first = orjson.loads(await ws.recv())
            if first.get("type") != "ready":
                raise RuntimeError(f"first frame is not ready: {first}")
        except BaseException:
            ws.transport.abort()
            raise
        return ws, first
