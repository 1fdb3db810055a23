"""Messages: store (assigning the item's next seq), publish, history."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import orjson
from sqlalchemy import Table, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import metrics
from api.clock import iso_z, utcnow
from api.errors import DomainError, Forbidden, NotFound
from api.models import Item, Membership, Message, Role

log = logging.getLogger(__name__)
# Seqs are 32-bit integers in the store: two billion messages per item.
MAX_SEQ = 2**31 - 1
# The storing path runs Core statements on the tables: the ORM's bulk INSERT and
# UPDATE machinery cost more per message than the database did (py-spy, publish bench).
_items = cast(Table, Item.__table__)
_members = Membership.__table__
_messages = cast(Table, Message.__table__)


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


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to store: who publishes what on which item."""

    item_id: str
    user_id: str
    username: str
    data: str  # JSON text


async def store(
    db: AsyncSession, item_id: str, user_id: str, username: str, data: str, retention: int = 0
) -> StoredMessage:
    """Store one message as the item's next seq (see `store_many`)."""
    (result,) = await store_many(db, [Draft(item_id, user_id, username, data)], retention)
    if isinstance(result, DomainError):
        raise result
    return result


async def store_many(
    db: AsyncSession, drafts: Sequence[Draft], retention: int = 0
) -> list[StoredMessage | DomainError]:
    """Store messages in one transaction; one result per draft, in order.

    Each item's messages are numbered by one UPDATE of `items.last_seq`, whose row lock
    (a write lock on SQLite) serialises publishers on every worker: consecutive seqs
    with no gap, since a failed insert rolls the increment back with it. Items are
    locked in a fixed order, so two workers cannot deadlock. A draft whose author may
    not publish gets `Forbidden` (a reader) or `NotFound` (not a member, no item).
    """
    now = utcnow()
    ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
    rights = await _rights(db, {(d.item_id, d.user_id) for d in drafts})
    results: list[StoredMessage | DomainError] = []
    by_item: dict[str, list[int]] = {}
    for index, draft in enumerate(drafts):
        right = rights.get((draft.item_id, draft.user_id))
        if right is None:
            results.append(NotFound("item not found"))
        elif not right:
            results.append(Forbidden("readers cannot publish"))
        else:
            results.append(NotFound("item not found"))  # until numbered below
            by_item.setdefault(draft.item_id, []).append(index)
    rows: list[dict[str, object]] = []
    prune: list[tuple[str, int]] = []
    for item_id in sorted(by_item):
        indexes = by_item[item_id]
        last = await db.scalar(
            update(_items)
            .where(_items.c.id == item_id)
            .values(last_seq=_items.c.last_seq + len(indexes))
            .returning(_items.c.last_seq)
        )
        if last is None:
            continue  # deleted meanwhile: the drafts keep their NotFound
        for seq, index in enumerate(indexes, start=last - len(indexes) + 1):
            draft = drafts[index]
            msg = StoredMessage(item_id, seq, draft.username, draft.data, ts)
            results[index] = msg
            rows.append(
                {"item_id": item_id, "seq": seq, "sender": msg.sender, "data": msg.data, "ts": ts}
            )
        if retention:
            prune.append((item_id, last - retention))
    if rows:
        await db.execute(insert(_messages), rows)
    # After the insert: a group larger than the retention is pruned as well.
    for item_id, upto in prune:
        await db.execute(
            delete(_messages).where(_messages.c.item_id == item_id, _messages.c.seq <= upto)
        )
    await db.commit()
    metrics.MESSAGES_STORED.inc(len(rows))
    return results


async def _rights(
    db: AsyncSession, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], bool]:
    """(item, user) -> may publish; pairs of missing items or non-members are absent."""
    items = {item for item, _ in pairs}
    users = {user for _, user in pairs}
    rows = await db.execute(
        select(_items.c.id, _items.c.owner_id, _members.c.user_id, _members.c.role)
        .outerjoin(_members, and_(_members.c.item_id == _items.c.id, _members.c.user_id.in_(users)))
        .where(_items.c.id.in_(items))
    )
    rights: dict[tuple[str, str], bool] = {}
    for item_id, owner_id, member_id, role in rows:
        rights[(item_id, owner_id)] = True
        if member_id is not None:
            rights[(item_id, member_id)] = Role(role) in (Role.owner, Role.writer)
    return {pair: rights[pair] for pair in pairs if pair in rights}


# Bytes of a message body beyond its data: ids, sender, seq, timestamp, punctuation.
BODY_OVERHEAD = 200


async def history(
    db: AsyncSession, item_id: str, after: int, limit: int, max_bytes: int
) -> tuple[list[StoredMessage], bool]:
    """Messages with `seq > after`, at most `limit` and about `max_bytes` of bodies (at
    least one); and whether the page was cut short by the bytes. Rows are streamed, so
    a page of large messages never holds more than its bound."""
    result = await db.stream(
        select(Message.item_id, Message.seq, Message.sender, Message.data, Message.ts)
        .where(Message.item_id == item_id, Message.seq > after)
        .order_by(Message.seq)
        .limit(limit)
        .execution_options(yield_per=64)
    )
    page: list[StoredMessage] = []
    size = 0
    try:
        async for row in result:
            data = row[3]
            size += BODY_OVERHEAD + (len(data) if data.isascii() else len(data.encode()))
            if page and size > max_bytes:
                return page, True
            page.append(StoredMessage(row[0], row[1], row[2], data, row[4]))
    finally:
        await result.close()
    return page, False
