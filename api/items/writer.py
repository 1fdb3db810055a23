"""Group commits: every message waiting to be stored goes in one transaction.

Publishes from every socket and REST call of a process queue here; one task hands
everything queued to the process's group store (rights, numbering by a bump of each
item's `last_seq`, the inserts and one commit, in one trip to the database: see
`api.items.group_store`), then acknowledges the callers and hands the stored messages
to the broker in one call. A burst costs one transaction instead of one per message;
a lone publish is not delayed (the task never waits for a group to fill).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from api.errors import Unavailable
from api.items.group_store import GroupStore
from api.items.messages import Draft, StoredMessage

log = logging.getLogger(__name__)
MAX_BATCH = 1000


class Publisher(Protocol):
    """Where stored messages go to be delivered (the hub, in the service)."""

    async def publish_messages(self, messages: Sequence[tuple[str, int, str]]) -> None:
        """(item id, seq, message frame) of a stored group, in order, in one go."""


@dataclass(slots=True)
class _Pending:
    draft: Draft
    future: asyncio.Future[StoredMessage] = field(repr=False)


class MessageWriter:
    def __init__(self, store: GroupStore, publisher: Publisher) -> None:
        self._store = store
        self._publisher = publisher
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        await self._store.open()
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
        await self._store.close()

    def submit(
        self, item_id: str, user_id: str, username: str, data: str
    ) -> asyncio.Future[StoredMessage]:
        """Queue a message; the future resolves once it is stored (or fails with
        `Forbidden` / `NotFound`, or the store's error when it could not be reached)."""
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
                group = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                await self._store_group(group)

    async def _store_group(self, group: list[_Pending]) -> None:
        try:
            results = await self._store.store([p.draft for p in group])
        except Exception as exc:
            log.warning("storing a group of %d messages failed: %r", len(group), exc)
            for pending in group:
                if not pending.future.done():
                    failure = Unavailable()
                    failure.__cause__ = exc
                    pending.future.set_exception(failure)
            return
        # Acknowledge first (stored is enough), then publish: on the sender's own socket
        # the ack then comes before the message, as when publishing alone.
        for pending, result in zip(group, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, StoredMessage):
                pending.future.set_result(result)
            else:
                pending.future.set_exception(result)
        stored = [(r.item_id, r.seq, r.frame()) for r in results if isinstance(r, StoredMessage)]
        if not stored:
            return
        try:
            await self._publisher.publish_messages(stored)
        except Exception:
            # Stored: hubs fill the gap from the store (or poll it).
            log.warning("broker publish failed; hubs will read it from the store")
