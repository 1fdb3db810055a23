"""Message publishes, stored by group commit (see `api.items.group_commit`).

The process's group store checks each author's right to publish, numbers each item's
messages by a bump of its `last_seq` and inserts them, in one transaction per group
(see `api.items.group_store`). Callers are acknowledged first, then the stored group
goes to the broker in one call: on the sender's own socket the `ack` then comes before
the `message`, as when publishing alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, cast

from api.errors import DomainError
from api.items.group_commit import GroupCommit
from api.items.group_store import GroupStore, Result
from api.items.messages import Draft, StoredMessage

MAX_BATCH = 1000


class Publisher(Protocol):
    """Where stored messages go to be delivered (the hub, in the service)."""

    async def publish_messages(self, messages: Sequence[tuple[str, int, str]]) -> None:
        """(item id, seq, message frame) of a stored group, in order, in one go."""


class MessageWriter:
    def __init__(self, store: GroupStore, publisher: Publisher) -> None:
        self._publisher = publisher
        self._commit: GroupCommit[Draft, Result] = GroupCommit(
            store,
            name="message-writer",
            max_group=MAX_BATCH,
            raises=(DomainError,),
            after=self._publish,
        )

    async def start(self) -> None:
        await self._commit.start()

    async def stop(self) -> None:
        """Store what is queued, then stop."""
        await self._commit.stop()

    def submit(
        self, item_id: str, user_id: str, username: str, data: str
    ) -> asyncio.Future[StoredMessage]:
        """Queue a message; the future resolves once it is stored (or fails with
        `Forbidden` / `NotFound`, or `Unavailable` when the store could not be reached)."""
        future = self._commit.submit(Draft(item_id, user_id, username, data))
        return cast("asyncio.Future[StoredMessage]", future)  # refusals are raised

    async def publish(self, item_id: str, user_id: str, username: str, data: str) -> StoredMessage:
        return await self.submit(item_id, user_id, username, data)

    async def _publish(self, results: Sequence[Result]) -> None:
        stored = [(r.item_id, r.seq, r.frame()) for r in results if isinstance(r, StoredMessage)]
        if stored:
            await self._publisher.publish_messages(stored)
