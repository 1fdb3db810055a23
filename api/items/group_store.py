"""The writer's storing path: a connection of its own, one trip to the database per group.

A group is every message waiting when the writer takes its turn. Storing it checks each
author's right to publish, numbers each item's messages by bumping `items.last_seq`
(whose row lock serialises the writers of every process: seqs stay contiguous), inserts
the rows and commits, all in one transaction. One result per draft, in order: the
stored message, or `Forbidden` (a reader) / `NotFound` (no such item, or not a member).

Chosen by URL: `sqlite_store.SqliteGroupStore` (the stdlib driver on a thread of its own,
one hop per group) or `postgres_store.PostgresGroupStore` (asyncpg, one statement per
group). Anything else, or a SQLite database only one connection can see (in memory),
stores through SQLAlchemy sessions (`SessionGroupStore`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.clock import utcnow
from api.errors import DomainError, Forbidden, NotFound
from api.items.group_commit import CommitStore
from api.items.messages import Draft, StoredMessage, store_many

Result = StoredMessage | DomainError


# Messages in, one result per message out: see `api.items.group_commit`.
GroupStore = CommitStore[Draft, Result]


def stored_at() -> datetime:
    """Now, at the millisecond precision messages are stored and shown with."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def refused(known: bool) -> DomainError:
    return Forbidden("readers cannot publish") if known else NotFound("item not found")


class SessionGroupStore:
    """Through a pooled SQLAlchemy session per group (see `messages.store_many`)."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], retention: int) -> None:
        self._session_factory = session_factory
        self._retention = retention

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def store(self, drafts: Sequence[Draft]) -> list[Result]:
        async with self._session_factory() as db:
            return await store_many(db, drafts, self._retention)
