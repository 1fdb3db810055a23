"""One broker subscription per item per process, kept while the item has sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from api import metrics
from api.realtime import protocol
from api.realtime.broker import Broker
from api.realtime.envelope import item_channel, open_envelope
from api.realtime.sink import Sink
from api.realtime.store import Store
from api.realtime.streams import ItemStream

log = logging.getLogger(__name__)

# An item's subscription outlives its last socket this long (reconnects are common).
LINGER = 30.0


class Subscriptions:
    def __init__(self, broker: Broker, store: Store) -> None:
        self.broker = broker
        self.store = store
        self._items: dict[str, ItemStream] = {}

    def get(self, item_id: str) -> ItemStream | None:
        return self._items.get(item_id)

    def all(self) -> list[ItemStream]:
        return list(self._items.values())

    def ready(self) -> dict[str, ItemStream]:
        return {i: s for i, s in self._items.items() if s.ready.is_set()}

    async def join(self, outbox: Sink) -> ItemStream:
        """Add the outbox to its item's stream once the stream is live."""
        item_id = outbox.item_id
        stream = self._items.get(item_id)
        if stream is not None and stream.task is not None and stream.task.done():
            # Its subscription failed (and closed its sockets): subscribe afresh.
            if stream.linger is not None:
                stream.linger.cancel()
            del self._items[item_id]
            stream = None
        if stream is None:
            stream = self._items[item_id] = ItemStream(item_id, self.store.fetch)
            stream.task = asyncio.create_task(self._receive(stream), name=f"hub-item-{item_id}")
        if stream.linger is not None:
            stream.linger.cancel()
            stream.linger = None
        stream.outboxes.add(outbox)
        await stream.ready.wait()
        return stream

    def leave(self, outbox: Sink) -> None:
        stream = self._items.get(outbox.item_id)
        if stream is None:
            return
        stream.outboxes.discard(outbox)
        if not stream.outboxes and stream.linger is None:
            loop = asyncio.get_running_loop()
            stream.linger = loop.call_later(LINGER, self.drop, stream)

    def drop(self, stream: ItemStream) -> None:
        """Unsubscribe from an item (no socket left, or the item is gone)."""
        if stream.linger is not None:
            stream.linger.cancel()
            stream.linger = None
        if self._items.get(stream.item_id) is stream and not stream.outboxes:
            del self._items[stream.item_id]
            if stream.task is not None:
                stream.task.cancel()

    async def stop(self) -> None:
        tasks = [s.task for s in self._items.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._items.clear()

    async def _receive(self, stream: ItemStream) -> None:
        item_id = stream.item_id
        try:
            async with self.broker.subscribe(item_channel(item_id)) as sub:
                # Baseline after subscribing: anything stored later arrives through the
                # broker or, if lost on the way, through the store watch.
                stream.last_seq = (await self.store.latest([item_id])).get(item_id, 0)
                stream.ready.set()
                async for payload in sub:
                    seq, stored_at, frame = open_envelope(payload)
                    if not seq:
                        stream.fan_out(0, frame)
                        continue
                    await stream.deliver(seq, frame)
                    if stored_at:
                        metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - stored_at))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("item subscription failed", extra={"item_id": item_id})
            stream.close_where(
                protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE, lambda _: True
            )
        finally:
            stream.ready.set()
