"""`store_many`: rights, contiguous numbering, retention, one result per draft."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import Forbidden, NotFound
from api.items.messages import Draft, StoredMessage, history, store_many
from api.models import Item, Role
from tests.items.conftest import seed

Sessions = async_sessionmaker[AsyncSession]


def draft(item_id: str, user_id: str, n: int) -> Draft:
    return Draft(item_id, user_id, user_id, str(n))


async def test_drafts_are_numbered_contiguously_per_item_in_order(sessions: Sessions) -> None:
    await seed(sessions, "a", {"w": Role.writer})
    await seed_more(sessions, "b")
    drafts = [draft("a", "owner", 1), draft("b", "owner", 2), draft("a", "w", 3)]
    async with sessions() as db:
        results = await store_many(db, drafts)
    assert [(r.item_id, r.seq, r.data) for r in results if isinstance(r, StoredMessage)] == [
        ("a", 1, "1"),
        ("b", 1, "2"),
        ("a", 2, "3"),
    ]
    async with sessions() as db:
        results = await store_many(db, [draft("a", "owner", 4)])
        last_seq = await db.scalar(select(Item.last_seq).where(Item.id == "a"))
    assert [r.seq for r in results if isinstance(r, StoredMessage)] == [3]
    assert last_seq == 3


async def test_each_draft_gets_its_own_refusal(sessions: Sessions) -> None:
    await seed(sessions, "a", {"r": Role.reader, "w": Role.writer})
    drafts = [
        draft("a", "r", 1),
        draft("a", "stranger", 2),
        draft("missing", "owner", 3),
        draft("a", "w", 4),
    ]
    async with sessions() as db:
        results = await store_many(db, drafts)
    assert isinstance(results[0], Forbidden)
    assert isinstance(results[1], NotFound)
    assert isinstance(results[2], NotFound)
    stored = results[3]
    assert isinstance(stored, StoredMessage) and stored.seq == 1  # refusals take no seq


async def test_retention_keeps_the_last_messages_only(sessions: Sessions) -> None:
    await seed(sessions, "a", {})
    async with sessions() as db:
        await store_many(db, [draft("a", "owner", n) for n in range(1, 6)], retention=2)
        kept, _ = await history(db, "a", 0, 100, 1 << 30)
    assert [m.seq for m in kept] == [4, 5]


async def test_stored_frames_carry_the_data_as_given(sessions: Sessions) -> None:
    await seed(sessions, "a", {})
    async with sessions() as db:
        (result,) = await store_many(db, [Draft("a", "owner", "owner", '{"x":[1,2]}')])
    assert isinstance(result, StoredMessage)
    assert '"data":{"x":[1,2]}' in result.frame()
    assert result.frame().startswith('{"type":"message"')


async def seed_more(sessions: Sessions, item_id: str) -> None:
    """Another item of the same owner."""
    async with sessions() as db:
        db.add(Item(id=item_id, name=item_id, owner_id="owner"))
        await db.commit()
