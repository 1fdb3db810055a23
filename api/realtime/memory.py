"""In-process broker: the default for a single worker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager


class QueueSubscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.queue.get()


class MemoryBroker:
    def __init__(self) -> None:
        self._channels: defaultdict[str, set[QueueSubscription]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()

    async def ping(self) -> None:
        return None

    async def publish(self, channel: str, payload: bytes) -> None:
        for sub in self._channels.get(channel, ()):
            sub.queue.put_nowait(payload)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        channels = self._channels
        for channel, payload in messages:
            for sub in channels.get(channel, ()):
                sub.queue.put_nowait(payload)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[QueueSubscription]:
        sub = QueueSubscription()
        self._channels[channel].add(sub)
        try:
            yield sub
        finally:
            subs = self._channels.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._channels[channel]
