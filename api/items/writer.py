"""Group commits: every message waiting to be stored goes in one transaction.

Publishes from every socket and REST call of a process queue here; one task takes
everything queued, checks the publishers' rights, numbers each item's messages with
one UPDATE of its `last_seq` (the row lock that serialises workers), inserts them all,
commits, publishes them to the broker and resolves the callers' futures, in order.
A burst costs one transaction instead of one per message; a lone publish is not
delayed (the task never waits for a batch to fill).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import metrics
from api.clock import utcnow
from api.errors import DomainError, Forbidden, NotFound
from api.items.messages import StoredMessage
from api.models import Item, Membership, Message, Role
from api.realtime.hub import Hub

log = logging.getLogger(__name__)
MAX_BATCH = 1000


@dataclass(slots=True)
class _Pending:
    item_id: str
    user_id: str
    username: str
    data: str
    future: asyncio.Future[StoredMessage] = field(repr=False)
    error: DomainError | None = None


class MessageWriter:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], hub: Hub, retention: int = 0
    ) -> None:
        self._session_factory = session_factory
        self._hub = hub
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
        self._queue.append(_Pending(item_id, user_id, username, data, future))
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
                    stored = await self._store(batch)
                except Exception as exc:
                    log.exception("storing a batch of %d messages failed", len(batch))
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
                # Acknowledge first (stored is enough), then publish: on the sender's own
                # socket the ack then comes before the message, as when publishing alone.
                for pending in batch:
                    if pending.future.done():
                        continue
                    if pending.error is not None:
                        pending.future.set_exception(pending.error)
                for pending, msg in zip((p for p in batch if p.error is None), stored, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(msg)
                for msg in stored:
                    try:
                        await self._hub.publish_message(msg.item_id, msg.seq, msg.frame())
                    except Exception:
                        # Stored: hubs fill the gap from the store (or poll it).
                        log.warning("broker publish failed; hubs will read it from the store")

    async def _store(self, batch: list[_Pending]) -> list[StoredMessage]:
        now = utcnow()
        ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
        async with self._session_factory() as db:
            rights = await _rights(db, {(p.item_id, p.user_id) for p in batch})
            by_item: dict[str, list[_Pending]] = {}
            for pending in batch:
                right = rights.get((pending.item_id, pending.user_id))
                if right is None:
                    pending.error = NotFound("item not found")
                elif not right:
                    pending.error = Forbidden("readers cannot publish")
                else:
                    by_item.setdefault(pending.item_id, []).append(pending)
            rows: list[dict[str, object]] = []
            numbered: dict[int, StoredMessage] = {}
            # Items in a fixed order: two workers locking the same rows cannot deadlock.
            for item_id in sorted(by_item):
                pendings = by_item[item_id]
                last = await db.scalar(
                    update(Item)
                    .where(Item.id == item_id)
                    .values(last_seq=Item.last_seq + len(pendings))
                    .returning(Item.last_seq)
                )
                if last is None:
                    for pending in pendings:
                        pending.error = NotFound("item not found")
                    continue
                for seq, pending in enumerate(pendings, start=last - len(pendings) + 1):
                    row = {"item_id": item_id, "seq": seq, "sender": pending.username}
                    rows.append({**row, "data": pending.data, "ts": ts})
                    numbered[id(pending)] = StoredMessage(
                        item_id, seq, pending.username, pending.data, ts
                    )
                if self._retention:
                    await db.execute(
                        delete(Message).where(
                            Message.item_id == item_id, Message.seq <= last - self._retention
                        )
                    )
            if rows:
                await db.execute(insert(Message), rows)
            await db.commit()
        metrics.MESSAGES_STORED.inc(len(rows))
        return [numbered[id(p)] for p in batch if p.error is None]


async def _rights(
    db: AsyncSession, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], bool]:
    """(item, user) -> may publish; pairs of missing items or non-members are absent."""
    items = {item for item, _ in pairs}
    users = {user for _, user in pairs}
    rows = await db.execute(
        select(Item.id, Item.owner_id, Membership.user_id, Membership.role)
        .outerjoin(Membership, and_(Membership.item_id == Item.id, Membership.user_id.in_(users)))
        .where(Item.id.in_(items))
    )
    rights: dict[tuple[str, str], bool] = {}
    for item_id, owner_id, member_id, role in rows:
        rights[(item_id, owner_id)] = True
        if member_id is not None:
            rights[(item_id, member_id)] = Role(role) in (Role.owner, Role.writer)
    return {pair: rights[pair] for pair in pairs if pair in rights}
