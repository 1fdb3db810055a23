"""Which group store a database URL gets: the writer's own connection where the database
allows one, a pooled SQLAlchemy session otherwise (an in-memory SQLite database)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.items.group_store import GroupStore, SessionGroupStore
from api.items.postgres_conn import asyncpg_dsn
from api.items.postgres_store import PostgresGroupStore
from api.items.sqlite_store import SqliteGroupStore


def group_store_for(
    url: str,
    session_factory: async_sessionmaker[AsyncSession],
    *,
    retention: int,
    sqlite_synchronous: str,
) -> GroupStore:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return SqliteGroupStore(parsed.database, retention, sqlite_synchronous)
    if backend == "postgresql":
        return PostgresGroupStore(asyncpg_dsn(url), retention)
    return SessionGroupStore(session_factory, retention)
