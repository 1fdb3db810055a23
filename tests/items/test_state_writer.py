"""The state writer's group commits, through its own connection, on SQLite and PostgreSQL:
a refused change in a group leaves the others stored with contiguous versions; a group
whose transaction fails answers `Unavailable` to every change in it and stores none."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import Forbidden, NotFound, Unavailable
from api.items.state import Change, Outcome, StoredState, initial_state, read_state
from api.items.state_writer import SessionStateStore, StateStore, StateWriter
from api.items.stores import state_store_for
from api.kinds import Conflict
from api.models import ItemState, Role, StateChange
from tests.items.conftest import seed

Sessions = async_sessionmaker[AsyncSession]


class Recording:
    """The real store, with the groups it was given."""

    def __init__(self, store: StateStore) -> None:
        self.store_ = store
        self.groups: list[int] = []

    async def open(self) -> None:
        await self.store_.open()

    async def close(self) -> None:
        await self.store_.close()

    async def store(self, changes: Sequence[Change]) -> Sequence[Outcome]:
        self.groups.append(len(changes))
        return await self.store_.store(changes)


class Published:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    async def publish_states(self, states: Sequence[StoredState]) -> None:
        self.calls.append([s.version for s in states])


def own_store(sessions: Sessions) -> Recording:
    engine = sessions.kw["bind"]
    url = engine.url.render_as_string(hide_password=False)
    store = state_store_for(url, sessions, max_bytes=65536, keep=100, sqlite_synchronous="NORMAL")
    assert not isinstance(store, SessionStateStore)
    return Recording(store)


async def document(sessions: Sessions, members: dict[str, Role]) -> None:
    await seed(sessions, "a", members)
    async with sessions() as db:
        db.add(ItemState(item_id="a", version=0, state=initial_state("document", "owner")))
        await db.commit()


def add(user: str, path: str, value: object = 1) -> Change:
    return Change("a", user, user, "ops", [{"op": "add", "path": path, "value": value}])


async def stored_versions(sessions: Sessions) -> list[int]:
    async with sessions() as db:
        rows = await db.scalars(
            select(StateChange.version).where(StateChange.item_id == "a").order_by("version")
        )
        return list(rows)


async def test_a_refused_change_in_a_group_leaves_the_others_stored_in_order(
    sessions: Sessions,
) -> None:
    await document(sessions, {"w": Role.writer, "r": Role.reader})
    store, published = own_store(sessions), Published()
    writer = StateWriter(store, published, keep=100)
    await writer.start()
    try:
        # Queued before the writer's task runs again: one group.
        futures = [
            writer.submit(change)
            for change in (
                add("owner", "/n"),
                Change("a", "w", "w", "ops", [{"op": "test", "path": "/n", "value": 0}]),
                add("r", "/reader"),
                add("w", "/m", 2),
                add("stranger", "/x"),
                add("owner", "/n", 3),
            )
        ]
        outcomes = await asyncio.gather(*futures)
    finally:
        await writer.stop()
    assert store.groups == [6]
    kinds = [type(o) for o in outcomes]
    assert kinds == [StoredState, Conflict, Forbidden, StoredState, NotFound, StoredState]
    versions = [o.version for o in outcomes if isinstance(o, StoredState)]
    assert versions == [1, 2, 3]
    assert [o.sender for o in outcomes if isinstance(o, StoredState)] == ["owner", "w", "owner"]
    assert published.calls == [[1, 2, 3]]
    async with sessions() as db:
        now = await read_state(db, "a")
    assert (now.version, orjson.loads(now.state)) == (3, {"n": 3, "m": 2})
    assert await stored_versions(sessions) == [1, 2, 3]


async def fail_inserts_by(sessions: Sessions, sender: str) -> None:
    """A trigger that aborts the storing transaction at its history insert — after the
    state row was updated, so that a rollback has something to undo."""
    async with sessions() as db:
        if db.get_bind().dialect.name == "sqlite":
            await db.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON state_changes"
                    f" WHEN NEW.sender = '{sender}' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                )
            )
        else:
            await db.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN"
                    f" IF NEW.sender = '{sender}' THEN RAISE EXCEPTION 'disk on fire'; END IF;"
                    " RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await db.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON state_changes"
                    " FOR EACH ROW EXECUTE FUNCTION boom()"
                )
            )
        await db.commit()


async def test_a_failed_group_answers_unavailable_and_stores_nothing_of_it(
    sessions: Sessions,
) -> None:
    await document(sessions, {"w": Role.writer, "boom": Role.writer})
    await fail_inserts_by(sessions, "boom")
    store, published = own_store(sessions), Published()
    writer = StateWriter(store, published, keep=100)
    await writer.start()
    try:
        first = await asyncio.gather(
            writer.submit(add("owner", "/a")), writer.submit(add("w", "/b"))
        )
        failed = [writer.submit(add("w", "/lost")), writer.submit(add("boom", "/c"))]
        results = await asyncio.gather(*failed, return_exceptions=True)
        after = await writer.submit(add("owner", "/d"))
    finally:
        await writer.stop()
    assert store.groups == [2, 2, 1]
    assert [o.version for o in first if isinstance(o, StoredState)] == [1, 2]
    assert all(isinstance(r, Unavailable) for r in results), results
    assert isinstance(after, StoredState) and after.version == 3
    assert published.calls == [[1, 2], [3]]
    async with sessions() as db:
        now = await read_state(db, "a")
    assert (now.version, orjson.loads(now.state)) == (3, {"a": 1, "b": 1, "d": 1})
    assert await stored_versions(sessions) == [1, 2, 3]


@pytest.mark.parametrize("refusal", ["reader", "conflict"])
async def test_the_session_store_agrees(sessions: Sessions, refusal: str) -> None:
    """The path for databases only SQLAlchemy reaches groups the same way."""
    await document(sessions, {"r": Role.reader})
    writer = StateWriter(SessionStateStore(sessions, 65536, 100), Published(), keep=100)
    await writer.start()
    try:
        refused = (
            add("r", "/x")
            if refusal == "reader"
            else Change("a", "owner", "owner", "ops", [{"op": "test", "path": "/n", "value": 9}])
        )
        outcomes = await asyncio.gather(
            writer.submit(add("owner", "/n")),
            writer.submit(refused),
            writer.submit(add("owner", "/m")),
        )
    finally:
        await writer.stop()
    assert [getattr(o, "version", None) for o in outcomes] == [1, None, 2]
    assert await stored_versions(sessions) == [1, 2]
