"""Delivery of state changes to the sockets that opted in (`?state=1`).

Like the message hub, and beside it: one broker subscription per item per process,
fed by every worker's state writer; each version is handed to the opted-in sockets'
outboxes in version order, none skipped. A version the broker lost is read back from
the store's recent changes, when a later version reveals the gap or when the poll
finds it still missing a poll interval after it was stored. Each socket starts with a
snapshot and receives only the versions after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import NotFound
from api.items import state as store
from api.items.state import StoredState
from api.realtime import protocol
from api.realtime.broker import Broker
from api.realtime.sink import Sink

log = logging.getLogger(__name__)


def state_channel(item_id: str) -> str:
    return f"state:{item_id}"


def _envelope(version: int, frame: str) -> bytes:
    return b"%d\n%s" % (version, frame.encode())


def _open(payload: bytes) -> tuple[int, str]:
    head, _, body = payload.partition(b"\n")
    return int(head), body.decode()


class MissedVersions(Exception):
    """Versions a delivery needs are no longer kept (STATE_HISTORY): its sockets resync."""


@dataclass(eq=False)
class _Item:
    # Each socket with the version of its snapshot: it gets the versions after it.
    outboxes: dict[Sink, int] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    joining: int = 0
    # The last version handed to the outboxes; every later one follows in order.
    version: int = 0
    # The store's version at the previous poll: what the broker has had time to bring.
    polled: int = 0


class StateHub:
    def __init__(
        self,
        broker: Broker,
        session_factory: async_sessionmaker[AsyncSession],
        poll_interval: float = 1.0,
    ) -> None:
        self.broker = broker
        self._session_factory = session_factory
        self.poll_interval = poll_interval
        self._items: dict[str, _Item] = {}
        self._poll_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._poll_task = asyncio.create_task(self._poll_forever(), name="state-poll")

    async def stop(self) -> None:
        tasks = [i.task for i in self._items.values() if i.task] + [self._poll_task]
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._items.clear()

    async def publish(self, stored: StoredState) -> None:
        """Announce a stored version to every worker (the state writer's `on_stored`)."""
        await self.broker.publish(
            state_channel(stored.item_id), _envelope(stored.version, stored.frame())
        )

    # Sockets.

    async def attach(self, outbox: Sink) -> str | None:
        """Start delivering the item's later versions to `outbox`, and return the
        snapshot frame to send it first (the current state, without `sender`).

        None when the item is gone or its subscription failed: the outbox is then
        closing (1008 `forbidden`, 1013 `broker unavailable`)."""
        item = self._items.get(outbox.item_id)
        if item is None or (item.task is not None and item.task.done()):
            item = self._items[outbox.item_id] = _Item()
            item.task = asyncio.create_task(
                self._item_loop(outbox.item_id, item), name=f"state-item-{outbox.item_id}"
            )
        item.joining += 1  # keeps the subscription while the snapshot is read
        try:
            await item.ready.wait()
            if item.task is None or item.task.done():
                outbox.request_close(protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE)
                return None
            # Read under the lock the deliveries take: a version stored after the
            # snapshot is delivered after the socket is added, one before is filtered.
            async with item.lock, self._session_factory() as db:
                try:
                    current = await store.read_state(db, outbox.item_id)
                except NotFound:
                    outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
                    return None
                item.outboxes[outbox] = current.version
        finally:
            item.joining -= 1
            self._drop_if_unused(outbox.item_id, item)
        return current.frame()

    def detach(self, outbox: Sink) -> None:
        item = self._items.get(outbox.item_id)
        if item is not None and item.outboxes.pop(outbox, None) is not None:
            self._drop_if_unused(outbox.item_id, item)

    def _drop_if_unused(self, item_id: str, item: _Item) -> None:
        if item.outboxes or item.joining or self._items.get(item_id) is not item:
            return
        del self._items[item_id]
        if item.task is not None:
            item.task.cancel()

    # Receiving.

    async def _item_loop(self, item_id: str, item: _Item) -> None:
        try:
            async with self.broker.subscribe(state_channel(item_id)) as sub:
                # Baseline after subscribing: later versions come through the broker or,
                # if lost on the way, through the store.
                item.version = item.polled = (await self._latest([item_id])).get(item_id, 0)
                item.ready.set()
                async for payload in sub:
                    version, frame = _open(payload)
                    async with item.lock:
                        if version <= item.version:
                            continue  # delivered already, through a gap fill
                        try:
                            if version > item.version + 1:
                                # Lost, or overtaken by a change another worker published.
                                await self._fill(item_id, item, version - 1)
                        except MissedVersions:
                            pass  # its sockets are closing; later ones start afresh
                        else:
                            self._fan_out(item, version, frame)
                        item.version = version
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("state subscription failed", extra={"item_id": item_id})
            self._close_all(item, protocol.BROKER_UNAVAILABLE)
        finally:
            item.ready.set()

    async def _fill(self, item_id: str, item: _Item, upto: int) -> None:
        async with self._session_factory() as db:
            frames = await store.changes_between(db, item_id, item.version, upto)
        expected = list(range(item.version + 1, upto + 1))
        if [version for version, _ in frames] != expected:
            self._close_all(item, protocol.STORE_UNAVAILABLE)
            raise MissedVersions(item_id)
        for version, frame in frames:
            item.version = version
            self._fan_out(item, version, frame)

    def _fan_out(self, item: _Item, version: int, frame: str) -> None:
        for outbox, after in tuple(item.outboxes.items()):
            if version > after:
                outbox.push(0, frame)

    def _close_all(self, item: _Item, reason: str) -> None:
        # The client opens the socket again and starts from a fresh snapshot.
        for outbox in tuple(item.outboxes):
            outbox.request_close(protocol.TRY_AGAIN_LATER, reason)

    async def _latest(self, item_ids: list[str]) -> dict[str, int]:
        async with self._session_factory() as db:
            return await store.latest_versions(db, item_ids)

    async def poll(self) -> None:
        """Deliver versions the broker lost and no later one revealed: those the store
        already had at the previous poll (the broker has had a poll interval for them,
        so a backlog under load is not mistaken for a loss)."""
        ready = {i: s for i, s in self._items.items() if s.ready.is_set()}
        if not ready:
            return
        latest = await self._latest(list(ready))
        for item_id, item in ready.items():
            due, item.polled = item.polled, latest.get(item_id, 0)
            if due <= item.version:
                continue  # delivered, or gone (its sockets are closed by the revocation)
            async with item.lock:
                try:
                    await self._fill(item_id, item, due)
                except MissedVersions:
                    item.version = due

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll()
            except Exception:
                log.warning("state poll failed", exc_info=True)
