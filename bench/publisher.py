"""The fan-out publisher: one socket in the main process, in a burst or at a steady rate.

Every `publish` carries `{"p": phase, "i": index, "t": time.time() at sending}` in its
`data` (plus padding when asked): the subscribers measure publish→receipt latency from
`t` the same way for all three servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.wsclient import open_client

OPEN_TIMEOUT = 30.0


@dataclass
class Sent:
    count: int
    first: float
    last: float
    stalled: bool  # the time limit ran out before every message was sent


class Publisher:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.acked = 0
        self.refused: list[int] = []  # refs of publishes answered with an error
        self.errors: list[str] = []
        self._answer = asyncio.Event()
        self._reader = asyncio.create_task(self._drain())

    @classmethod
    async def open(cls, url: str) -> Publisher:
        ws, _ = await open_client(url, OPEN_TIMEOUT)
        return cls(ws)

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self.ws:
                frame = orjson.loads(text)
                kind = frame.get("type")
                if kind == "ack":
                    self.acked += 1
                elif kind == "error":
                    ref = frame.get("ref")
                    if isinstance(ref, str) and ref.isdigit():
                        self.refused.append(int(ref))
                    if len(self.errors) < 5:
                        self.errors.append(str(text)[:300])
                else:
                    continue
                self._answer.set()

    def _frame(self, phase: str, i: int, pad: str) -> str:
        data: dict[str, object] = {"p": phase, "i": i, "t": time.time()}
        if pad:
            data["x"] = pad
        return orjson.dumps({"type": "publish", "data": data, "ref": str(i)}).decode()

    async def burst(self, phase: str, n: int, within: float, pad: int = 0) -> Sent:
        """`n` messages back to back."""
        return await self.paced(phase, n, 0.0, within, pad)

    async def paced(self, phase: str, n: int, rate: float, within: float, pad: int = 0) -> Sent:
        """`n` messages at `rate` per second (0: as fast as the socket takes them)."""
        padding = "x" * pad
        self.acked = 0
        self.refused = []
        first = time.time()
        start = time.monotonic()
        sent = 0
        try:
            async with asyncio.timeout(within):
                for i in range(n):
                    if rate:
                        delay = start + i / rate - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await self.ws.send(self._frame(phase, i, padding))
                    sent += 1
        except (TimeoutError, ConnectionClosed):
            pass
        return Sent(sent, first, time.time(), stalled=sent < n)

    async def answers(self, sent: int, idle: float) -> list[int]:
        """Wait for an `ack` or `error` to each of the `sent` publishes of the phase, until
        none comes for `idle` seconds; the refs of the refused ones."""
        while self.acked + len(self.refused) < sent:
            self._answer.clear()
            try:
                await asyncio.wait_for(self._answer.wait(), idle)
            except TimeoutError:
                break
        return sorted(self.refused)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await asyncio.wait_for(self.ws.close(), 5)
        if self.ws.transport is not None:
            self.ws.transport.abort()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
