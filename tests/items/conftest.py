"""A migrated database per test, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import migrate
from api.db import make_engine, make_session_factory
from api.models import Item, Membership, Role, User
from tests.servers import POSTGRES_URL, database_url

KINDS = ["sqlite", *(["postgres"] if POSTGRES_URL else [])]


@pytest.fixture(params=KINDS)
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    with database_url(request.param, tmp_path) as url:
        engine = make_engine(url)
        try:
            await migrate.upgrade(engine)
            yield make_session_factory(engine)
        finally:
            await engine.dispose()


async def seed(
    sessions: async_sessionmaker[AsyncSession], item_id: str, members: dict[str, Role]
) -> None:
    """An item owned by `owner`, with the given members (users named as their ids)."""
    async with sessions() as db:
        for user_id in ["owner", *members]:
            db.add(User(id=user_id, username=user_id, password_hash="x"))
        await db.flush()
        db.add(Item(id=item_id, name=item_id, owner_id="owner"))
        await db.flush()
        for user_id, role in members.items():
            db.add(Membership(item_id=item_id, user_id=user_id, role=role))
        await db.commit()
