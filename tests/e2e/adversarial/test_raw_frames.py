"""Catalogue 4: frames the `websockets` client refuses to send (invalid UTF-8 text,
unmasked, reserved opcode), written byte by byte on a raw socket."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import pytest

from tests.e2e.adversarial.world import OPEN_TIMEOUT, Ctx, assert_service_works
from tests.rawsocket import upgrade_request
from tests.support import TIMEOUT


@dataclass(frozen=True)
class RawFrameCase:
    id: str
    frame: bytes  # complete wire bytes of one frame
    close_code: int


def ws_frame(opcode: int, payload: bytes, *, masked: bool = True, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


RAW_FRAMES = [
    # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection with 1007.
    RawFrameCase("text-invalid-utf8", ws_frame(0x1, b'{"type":"\xff\xfe"}'), 1007),
    RawFrameCase("text-truncated-utf8-sequence", ws_frame(0x1, b'"caf\xc3'), 1007),
    RawFrameCase("text-overlong-utf8", ws_frame(0x1, b'"\xc0\xaf"'), 1007),
    RawFrameCase("text-utf8-surrogate", ws_frame(0x1, b'"\xed\xa0\x80"'), 1007),
    # RFC 6455 §5.1/§5.2: protocol errors close with 1002.
    RawFrameCase("unmasked-client-frame", ws_frame(0x1, b'{"type":"ping"}', masked=False), 1002),
    RawFrameCase("reserved-opcode", ws_frame(0x3, b"x"), 1002),
    RawFrameCase("continuation-without-start", ws_frame(0x0, b"x"), 1002),
    RawFrameCase("fragmented-control-frame", ws_frame(0x9, b"x", fin=False), 1002),
]


class RawSocket:
    """A WebSocket client written byte by byte, to send what real clients refuse to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int, path: str) -> AsyncIterator[RawSocket]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), OPEN_TIMEOUT
        )
        try:
            writer.write(upgrade_request(port, path))
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), OPEN_TIMEOUT)
            assert response.startswith(b"HTTP/1.1 101"), response
            yield cls(reader, writer)
        finally:
            writer.close()
            with suppress(TimeoutError, OSError):
                await asyncio.wait_for(writer.wait_closed(), OPEN_TIMEOUT)

    async def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "server frames are never masked"
            return b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), timeout)

    async def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                assert len(payload) >= 2, "close frame without a code"
                return int.from_bytes(payload[:2], "big")


@pytest.mark.parametrize("case", RAW_FRAMES, ids=lambda c: c.id)
async def test_raw_frame_attack(case: RawFrameCase, ctx: Ctx) -> None:
    w = ctx.world
    async with RawSocket.open(w.server.port, f"/items/{w.item}/ws?token={w.owner.token}") as ws:
        opcode, payload = await ws.read_frame()
        assert opcode == 0x1 and json.loads(payload)["type"] == "ready"
        ws.writer.write(case.frame)
        await ws.writer.drain()
        assert await ws.close_code() == case.close_code
    await assert_service_works(ctx)
