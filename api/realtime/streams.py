"""One sequencing point per item: the live stream every local socket of the item gets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from api import metrics
from api.realtime.sink import Sink
from api.realtime.store import FILL_PAGE, FetchRange


@dataclass(eq=False)
class ItemStream:
    """An item's frames for this process, handed to its outboxes in `seq` order.

    Duplicates are dropped and a gap is filled from the store, page by page, once for
    the whole process; so each outbox receives a contiguous stream and only has its
    own catch-up to do.
    """

    item_id: str
    fetch: FetchRange
    # Item sockets' outboxes and `/ws` subscriptions alike.
    outboxes: set[Sink] = field(default_factory=set)
    # Set once the broker subscription is live and `last_seq` is known.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # The last seq handed to the outboxes; every later one is delivered in order.
    last_seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set while the item has no socket: the subscription is kept a while for the next.
    linger: asyncio.TimerHandle | None = None

    async def deliver(self, seq: int, frame: str) -> None:
        async with self.lock:
            if seq <= self.last_seq:
                return  # already delivered, through a gap fill
            if seq > self.last_seq + 1:
                # A message published elsewhere was lost or overtaken.
                await self._fill(seq - 1)
            self.last_seq = seq
            self.fan_out(seq, frame)

    async def catch_up(self, upto: int) -> None:
        """Deliver what the store has beyond what the broker brought."""
        async with self.lock:
            await self._fill(upto)

    async def _fill(self, upto: int) -> None:
        # Page by page: between pages the outboxes send what they got, so a long gap
        # does not fill every socket's queue at once (and close them all as slow).
        while self.last_seq < upto:
            page = await self.fetch(
                self.item_id, self.last_seq, min(upto, self.last_seq + FILL_PAGE)
            )
            if not page:
                self.last_seq = upto  # pruned by retention
                return
            metrics.GAP_FILLS.inc(len(page))
            for seq, frame in page:
                self.last_seq = seq
                self.fan_out(seq, frame)
            await asyncio.sleep(0)

    def fan_out(self, seq: int, frame: str) -> None:
        outboxes = tuple(self.outboxes)
        for outbox in outboxes:
            outbox.push(seq, frame)
        if seq:
            metrics.MESSAGES_DELIVERED.inc(len(outboxes))

    def close_where(self, code: int, reason: str, which: Callable[[Sink], bool]) -> None:
        for outbox in tuple(self.outboxes):
            if which(outbox):
                outbox.request_close(code, reason)
