"""Messages: store (assigning the item's next seq), publish, history."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import metrics
from api.clock import iso_z, utcnow
from api.errors import Forbidden, NotFound
from api.items.service import access
from api.models import Item, Message

log = logging.getLogger(__name__)
# Seqs are 32-bit integers in the store: two billion messages per item.
MAX_SEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class StoredMessage:
    item_id: str
    seq: int
    sender: str
    data: str  # JSON text
    ts: datetime

    def frame(self) -> str:
        """The `message` frame, encoded once and sent to every socket as is."""
        return message_json(self, frame=True)

    def body(self) -> str:
        return message_json(self, frame=False)


def message_json(msg: StoredMessage, *, frame: bool) -> str:
    body: dict[str, object] = {"type": "message"} if frame else {}
    body.update(
        item_id=msg.item_id,
        seq=msg.seq,
        sender=msg.sender,
        data=orjson.Fragment(msg.data),
        ts=iso_z(msg.ts),
    )
    return orjson.dumps(body).decode()


def encode_data(data: object) -> str:
    return orjson.dumps(data).decode()


async def store(
    db: AsyncSession, item_id: str, user_id: str, username: str, data: str, retention: int = 0
) -> StoredMessage:
    """Store a message as the item's next seq, in one transaction.

    The UPDATE of `items.last_seq` takes the item's row lock (a write lock on SQLite), so
    concurrent publishers on any worker get consecutive numbers with no gap: a failed
    insert rolls the increment back with it.
    """
    standing = await access(db, item_id, user_id)
    if not standing.can_publish:
        raise Forbidden("readers cannot publish")
    seq = await db.scalar(
        update(Item)
        .where(Item.id == item_id)
        .values(last_seq=Item.last_seq + 1)
        .returning(Item.last_seq)
    )
    if seq is None:
        await db.rollback()
        raise NotFound("item not found")
    now = utcnow()
    ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
    db.add(Message(item_id=item_id, seq=seq, sender=username, data=data, ts=ts))
    if retention:
        await db.execute(
            delete(Message).where(Message.item_id == item_id, Message.seq <= seq - retention)
        )
    await db.commit()
    metrics.MESSAGES_STORED.inc()
    return StoredMessage(item_id, seq, username, data, ts)


async def history(db: AsyncSession, item_id: str, after: int, limit: int) -> list[StoredMessage]:
    rows = await db.scalars(
        select(Message)
        .where(Message.item_id == item_id, Message.seq > after)
        .order_by(Message.seq)
        .limit(limit)
    )
    return [StoredMessage(m.item_id, m.seq, m.sender, m.data, m.ts) for m in rows]
