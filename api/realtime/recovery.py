"""What a lossy broker may have dropped, found again in the store."""

from __future__ import annotations

import asyncio
import logging

from api.realtime import protocol
from api.realtime.store import Store
from api.realtime.subscriptions import Subscriptions

log = logging.getLogger(__name__)


class StoreWatch:
    """Compares every subscribed item with the store and delivers what went missing.

    This bounds the delay of a message whose broker publish was lost and that no later
    message reveals (`interval`, by default one second).
    """

    def __init__(self, items: Subscriptions, store: Store, interval: float = 1.0) -> None:
        self.items = items
        self.store = store
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll_forever(), name="hub-poll")

    def stop(self) -> asyncio.Task[None] | None:
        if self._task is not None:
            self._task.cancel()
        return self._task

    async def poll(self) -> None:
        ready = self.items.ready()
        if not ready:
            return
        # Taken before the query: anything delivered by then was stored by then, so a
        # store that answers less has lost the item (deleted, maybe created again).
        delivered = {item_id: stream.last_seq for item_id, stream in ready.items()}
        latest = await self.store.latest(list(ready))
        for item_id, stream in ready.items():
            seq = latest.get(item_id)
            if seq is None or seq < delivered[item_id]:
                # Deleted (and perhaps created again) while a revocation was lost.
                stream.close_where(protocol.POLICY_VIOLATION, protocol.FORBIDDEN, lambda _: True)
                self.items.drop(stream)
            elif seq > stream.last_seq:
                await stream.catch_up(seq)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:
                log.warning("store poll failed", exc_info=True)
