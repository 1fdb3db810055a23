"""Which stores a database URL gets: the writers' own connections where the database
allows them, pooled SQLAlchemy sessions otherwise (an in-memory SQLite database)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.items.group_store import GroupStore, SessionGroupStore
from api.items.postgres_conn import asyncpg_dsn
from api.items.postgres_state import PostgresStateStore
from api.items.postgres_store import PostgresGroupStore
from api.items.sqlite_state import SqliteStateStore
from api.items.sqlite_store import SqliteGroupStore
from api.items.state_writer import SessionStateStore, StateStore


def _backend(url: str) -> tuple[str, str | None]:
    """("sqlite", its file) / ("postgresql", None) / ("", None): only a pool reaches it."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return "sqlite", parsed.database
    return ("postgresql", None) if backend == "postgresql" else ("", None)


def group_store_for(
    url: str,
    session_factory: async_sessionmaker[AsyncSession],
    *,
    retention: int,
    sqlite_synchronous: str,
) -> GroupStore:
    """The message writer's store."""
    backend, path = _backend(url)
    if backend == "sqlite" and path:
        return SqliteGroupStore(path, retention, sqlite_synchronous)
    if backend == "postgresql":
        return PostgresGroupStore(asyncpg_dsn(url), retention)
    return SessionGroupStore(session_factory, retention)


def state_store_for(
    url: str,
    session_factory: async_sessionmaker[AsyncSession],
    *,
    max_bytes: int,
    keep: int,
    sqlite_synchronous: str,
) -> StateStore:
    """The state writer's store."""
    backend, path = _backend(url)
    if backend == "sqlite" and path:
        return SqliteStateStore(path, max_bytes, keep, sqlite_synchronous)
    if backend == "postgresql":
        return PostgresStateStore(asyncpg_dsn(url), max_bytes, keep)
    return SessionStateStore(session_factory, max_bytes, keep)
