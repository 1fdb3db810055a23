"""A caller's standing on an item, cached for handshakes and REST publishes."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cache import TTLCache
from api.items import service
from api.items.service import Access

AccessCache = TTLCache[tuple[str, str], Access]


async def cached_access(
    cache: AccessCache,
    session_factory: async_sessionmaker[AsyncSession],
    item_id: str,
    user_id: str,
) -> Access:
    """The user's standing on the item (`NotFound` if none), cached for AUTH_CACHE_TTL.

    Revocations evict it on every worker; storing a message checks the rights again
    in its own transaction, so a stale entry never lets a removed member publish.
    The session is a short one of its own: a dependency-scoped one would be held for
    a socket's whole life and exhaust the pool.
    """
    standing = cache.get((item_id, user_id))
    if standing is None:
        # One read for every caller missing it at once (`NotFound` for all of them).
        standing = await cache.load(
            (item_id, user_id), partial(_read, session_factory, item_id, user_id)
        )
        assert standing is not None  # a missing standing is `NotFound`
    return standing


async def _read(
    session_factory: async_sessionmaker[AsyncSession], item_id: str, user_id: str
) -> Access:
    async with session_factory() as db:
        return await service.access(db, item_id, user_id)
