"""The broker: a tiny publish/subscribe interface between storing and delivering.

Implementations are chosen by URL scheme in `backends.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Subscription(Protocol):
    """Payloads published on one channel after the subscription began, in order."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...


class Broker(Protocol):
    """Fan-out bus shared by every worker.

    Delivery is at most once and in publish order per publisher; the hub repairs what
    a lossy transport drops, because every stored message can be re-read by `seq`.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """(channel, payload) pairs, in order, in one call (one round trip for Redis)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]: ...

    async def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...
