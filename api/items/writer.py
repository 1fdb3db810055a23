"""Group commits: every message waiting to be stored goes in one transaction.

Publishes from every socket and REST call of a process queue here; one task hands
everything queued to `messages.store_many` (rights, numbering by one UPDATE of each
item's `last_seq`, one insert, one commit), then acknowledges the callers and
publishes the messages to the broker, in order.
A burst costs one transaction instead of one per message; a lone publish is not
delayed (the task never waits for a batch to fill).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.items.messages import Draft, StoredMessage, store_many

log = logging.getLogger(__name__)
MAX_BATCH = 1000


class Publisher(Protocol):
    """Where stored messages go to be delivered (the hub, in the service)."""

    async def publish_message(self, item_id: str, seq: int, frame: str) -> None: ...


@dataclass(slots=True)
class _Pending:
    draft: Draft
    future: asyncio.Future[StoredMessage] = field(repr=False)


class MessageWriter:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        retention: int = 0,
    ) -> None:
        self._session_factory = session_factory
        self._publisher = publisher
        self._retention = retention
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="message-writer")

    async def stop(self) -> None:
        """Store what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 30)
            except TimeoutError:
                log.error("message writer did not drain in time")

    def submit(
        self, item_id: str, user_id: str, username: str, data: str
    ) -> asyncio.Future[StoredMessage]:
        """Queue a message; the future resolves once it is stored (or fails with
        `Forbidden` / `NotFound`)."""
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(Draft(item_id, user_id, username, data), future))
        self._wake.set()
        return future

    async def publish(self, item_id: str, user_id: str, username: str, data: str) -> StoredMessage:
        return await self.submit(item_id, user_id, username, data)

    async def _run(self) -> None:
        while not (self._stopping and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    async with self._session_factory() as db:
                        results = await store_many(db, [p.draft for p in batch], self._retention)
                except Exception as exc:
                    log.exception("storing a batch of %d messages failed", len(batch))
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
                # Acknowledge first (stored is enough), then publish: on the sender's own
                # socket the ack then comes before the message, as when publishing alone.
                for pending, result in zip(batch, results, strict=True):
                    if pending.future.done():
                        continue
                    if isinstance(result, StoredMessage):
                        pending.future.set_result(result)
                    else:
                        pending.future.set_exception(result)
                stored = [r for r in results if isinstance(r, StoredMessage)]
                for msg in stored:
                    try:
                        await self._publisher.publish_message(msg.item_id, msg.seq, msg.frame())
                    except Exception:
                        # Stored: hubs fill the gap from the store (or poll it).
                        log.warning("broker publish failed; hubs will read it from the store")
