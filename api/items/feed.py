"""The hub's windows onto the database: message reads (`api.realtime.store.Store`) and
the access re-check after a broker outage (`api.realtime.hub.Audit`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.clock import utcnow
from api.items.messages import StoredMessage
from api.models import AuthSession, Item, Membership, Message
from api.realtime import protocol
from api.realtime.sink import Sink

CHUNK = 500  # bound the IN lists


class StoreFeed:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def fetch(self, item_id: str, after: int, upto: int) -> list[tuple[int, str]]:
        async with self._session_factory() as db:
            rows = await db.execute(
                select(Message.seq, Message.sender, Message.data, Message.ts)
                .where(Message.item_id == item_id, Message.seq > after, Message.seq <= upto)
                .order_by(Message.seq)
            )
            return [
                (seq, StoredMessage(item_id, seq, sender, data, ts).frame())
                for seq, sender, data, ts in rows
            ]

    async def latest(self, item_ids: Collection[str]) -> dict[str, int]:
        ids = list(item_ids)
        found: dict[str, int] = {}
        async with self._session_factory() as db:
            for i in range(0, len(ids), CHUNK):
                rows = await db.execute(
                    select(Item.id, Item.last_seq).where(Item.id.in_(ids[i : i + CHUNK]))
                )
                found.update({item_id: seq for item_id, seq in rows})
        return found


class AccessAudit:
    """Which open sockets must close after commands may have been lost, and why."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __call__(self, outboxes: Sequence[Sink]) -> list[tuple[Sink, str]]:
        revoked = await self.revoked_sessions({o.session_id for o in outboxes})
        on_items = [o for o in outboxes if o.item_id]
        lost = await self.lost_access({(o.item_id, o.user_id) for o in on_items})
        closing: list[tuple[Sink, str]] = []
        for outbox in outboxes:
            if outbox.session_id in revoked:
                closing.append((outbox, protocol.SESSION_REVOKED))
            elif outbox.item_id and (outbox.item_id, outbox.user_id) in lost:
                closing.append((outbox, protocol.FORBIDDEN))
        return closing

    async def revoked_sessions(self, session_ids: Collection[str]) -> set[str]:
        ids = list(session_ids)
        active: set[str] = set()
        async with self._session_factory() as db:
            for i in range(0, len(ids), CHUNK):
                rows = await db.scalars(
                    select(AuthSession.id).where(
                        AuthSession.id.in_(ids[i : i + CHUNK]),
                        AuthSession.revoked_at.is_(None),
                        AuthSession.expires_at > utcnow(),
                    )
                )
                active.update(rows)
        return set(ids) - active

    async def lost_access(self, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted = list(pairs)
        allowed: set[tuple[str, str]] = set()
        async with self._session_factory() as db:
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i : i + CHUNK]
                owners = await db.execute(
                    select(Item.id, Item.owner_id).where(tuple_(Item.id, Item.owner_id).in_(chunk))
                )
                members = await db.execute(
                    select(Membership.item_id, Membership.user_id).where(
                        tuple_(Membership.item_id, Membership.user_id).in_(chunk)
                    )
                )
                allowed.update((a, b) for a, b in owners)
                allowed.update((a, b) for a, b in members)
        return set(wanted) - allowed
