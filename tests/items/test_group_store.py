"""The writer's group stores against real databases: rights, numbering, retention, history."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import migrate
from api.db import make_engine, make_session_factory
from api.errors import Forbidden, NotFound
from api.items import messages
from api.items.group_store import GroupStore, SessionGroupStore
from api.items.messages import Draft, StoredMessage
from api.items.postgres_store import PostgresGroupStore
from api.items.sqlite_store import SqliteGroupStore
from api.items.stores import group_store_for
from api.models import Item, Membership, Role, User
from tests.servers import POSTGRES_URL, postgres_database

DATABASES = ["sqlite", *(["postgres"] if POSTGRES_URL else [])]


class World:
    """A migrated database with an owner, a writer, a reader and an outsider on two items."""

    def __init__(self, url: str, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.url = url
        self.session_factory = session_factory

    def store(self, retention: int = 0) -> GroupStore:
        return group_store_for(
            self.url, self.session_factory, retention=retention, sqlite_synchronous="NORMAL"
        )

    async def history(self, item_id: str) -> list[StoredMessage]:
        async with self.session_factory() as db:
            rows, _ = await messages.history(db, item_id, 0, 1000, 1 << 30)
            return rows


@pytest.fixture(params=DATABASES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "postgres":
        with postgres_database() as url:
            async for w in _world(url):
                yield w
    else:
        async for w in _world(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"):
            yield w


async def _world(url: str) -> AsyncIterator[World]:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        factory = make_session_factory(engine)
        async with factory() as db:
            for name in ("owner", "writer", "reader", "outsider"):
                db.add(User(id=name, username=f"{name}-name", password_hash="x"))
            await db.flush()
            for item in ("a", "b"):
                db.add(Item(id=item, name=item, owner_id="owner"))
            await db.flush()
            db.add(Membership(item_id="a", user_id="writer", role=Role.writer))
            db.add(Membership(item_id="a", user_id="reader", role=Role.reader))
            await db.commit()
        yield World(url, factory)
    finally:
        await engine.dispose()


def draft(item: str, user: str, data: str = '"x"') -> Draft:
    return Draft(item, user, f"{user}-name", data)


def test_the_url_chooses_the_store(tmp_path: Path) -> None:
    factory: async_sessionmaker[AsyncSession] = async_sessionmaker()
    choose = group_store_for
    assert isinstance(
        choose(
            f"sqlite+aiosqlite:///{tmp_path}/x.db", factory, retention=0, sqlite_synchronous="FULL"
        ),
        SqliteGroupStore,
    )
    assert isinstance(
        choose("postgresql+asyncpg://u@h/db", factory, retention=0, sqlite_synchronous="NORMAL"),
        PostgresGroupStore,
    )
    # An in-memory SQLite database is seen by one connection only: the app's pool's.
    assert isinstance(
        choose("sqlite+aiosqlite://", factory, retention=0, sqlite_synchronous="NORMAL"),
        SessionGroupStore,
    )
    with pytest.raises(ValueError, match="SQLITE_SYNCHRONOUS"):
        SqliteGroupStore(str(tmp_path / "y.db"), 0, "OFF")


async def test_rights_are_checked_per_draft_and_seqs_are_contiguous(world: World) -> None:
    store = world.store()
    await store.open()
    try:
        results = await store.store(
            [
                draft("a", "owner", '{"n":1}'),
                draft("a", "reader"),
                draft("b", "writer"),  # a writer of a, not of b
                draft("a", "writer", "[2]"),
                draft("missing", "owner"),
                draft("b", "owner", '"b1"'),
                draft("a", "outsider"),
                draft("a", "owner", '"3"'),
            ]
        )
        again = await store.store([draft("a", "writer"), draft("b", "owner")])
    finally:
        await store.close()
    kinds = [type(r) for r in results]
    assert kinds == [
        StoredMessage,
        Forbidden,
        NotFound,
        StoredMessage,
        NotFound,
        StoredMessage,
        NotFound,
        StoredMessage,
    ]
    stored = [r for r in results + again if isinstance(r, StoredMessage)]
    assert [(m.item_id, m.seq, m.sender) for m in stored] == [
        ("a", 1, "owner-name"),
        ("a", 2, "writer-name"),
        ("b", 1, "owner-name"),
        ("a", 3, "owner-name"),
        ("a", 4, "writer-name"),
        ("b", 2, "owner-name"),
    ]
    history = await world.history("a")
    assert [(m.seq, m.sender, m.data) for m in history] == [
        (1, "owner-name", '{"n":1}'),
        (2, "writer-name", "[2]"),
        (3, "owner-name", '"3"'),
        (4, "writer-name", '"x"'),
    ]
    # What history reads back is what was acknowledged, timestamps included.
    assert [m.ts for m in history] == [m.ts for m in stored if m.item_id == "a"]
    async with world.session_factory() as db:
        item = await db.get(Item, "a")
        assert item is not None and item.last_seq == 4


async def test_a_group_of_one_author_refused_stores_nothing_and_takes_no_seq(
    world: World,
) -> None:
    store = world.store()
    await store.open()
    try:
        refusals = [
            await store.store([draft("a", "reader"), draft("a", "reader")]),
            await store.store([draft("a", "outsider")]),
            await store.store([draft("missing", "owner")]),
        ]
        stored = await store.store([draft("a", "writer"), draft("a", "writer")])
        owners = await store.store([draft("b", "owner"), draft("a", "owner")])
    finally:
        await store.close()
    assert [[type(r) for r in group] for group in refusals] == [
        [Forbidden, Forbidden],
        [NotFound],
        [NotFound],
    ]
    assert [(m.item_id, m.seq) for m in stored + owners] == [  # type: ignore[union-attr]
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("a", 3),
    ]


async def test_retention_keeps_the_last_messages_even_within_one_group(world: World) -> None:
    store = world.store(retention=3)
    await store.open()
    try:
        await store.store([draft("a", "owner", str(n)) for n in range(1, 6)])
        await store.store([draft("a", "owner", "6")])
    finally:
        await store.close()
    assert [m.seq for m in await world.history("a")] == [4, 5, 6]


async def test_two_stores_on_one_database_never_reuse_a_seq(world: World) -> None:
    """Two processes' writers: the `last_seq` bump serialises them."""
    stores = [world.store(), world.store()]
    for store in stores:
        await store.open()
    try:

        async def publish(store: GroupStore, tag: str) -> list[int]:
            seqs = []
            for n in range(20):
                group = [draft("a", "owner", f'"{tag}{n}-{k}"') for k in range(3)]
                group.append(draft("b", "owner", f'"{tag}{n}"'))
                for r in await store.store(group):
                    assert isinstance(r, StoredMessage)
                    if r.item_id == "a":
                        seqs.append(r.seq)
            return seqs

        first, second = await asyncio.gather(publish(stores[0], "p"), publish(stores[1], "q"))
    finally:
        for store in stores:
            await store.close()
    assert sorted(first + second) == list(range(1, 121))
    assert [m.seq for m in await world.history("a")] == list(range(1, 121))
    assert [m.seq for m in await world.history("b")] == list(range(1, 41))


async def test_sqlite_waits_off_the_loop_while_another_connection_writes(tmp_path: Path) -> None:
    """A group finding the write lock taken waits for it on the store's thread: the event
    loop keeps running meanwhile, and the group is stored once the lock is released."""
    async for world in _world(f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}"):
        store = world.store()
        assert isinstance(store, SqliteGroupStore)
        await store.open()
        other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # the write lock, held
            pending = asyncio.ensure_future(store.store([draft("a", "owner")]))
            ticks = 0
            while ticks < 20:  # the loop runs while the group waits
                await asyncio.sleep(0.01)
                ticks += 1
            assert not pending.done()
            other.execute("COMMIT")
            (result,) = await asyncio.wait_for(pending, 30)
            assert isinstance(result, StoredMessage) and result.seq == 1
            # And the next group, with the lock free, is stored on the loop again.
            (again,) = await store.store([draft("a", "owner")])
            assert isinstance(again, StoredMessage) and again.seq == 2
        finally:
            other.close()
            await store.close()
