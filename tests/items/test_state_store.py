"""Item state in the store: creation, one change after another, refusals, and many
writers on separate connections (as many workers) racing on one document — through the
state writer's own connection (`sqlite_state` / `postgres_state`) and through SQLAlchemy
sessions (`state.apply_many`), which must agree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api import migrate
from api.auth.security import new_id
from api.db import make_engine, make_session_factory
from api.errors import Forbidden, NotFound
from api.items import service
from api.items.state import Change, Outcome, StoredState, TooLarge, read_state
from api.items.state_writer import SessionStateStore, StateStore
from api.items.stores import state_store_for
from api.kinds import Conflict, Illegal, Invalid
from api.models import Role, StateChange, User
from tests.servers import POSTGRES_URL, postgres_database
from tests.support import unique


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with postgres_database() as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


async def make_user(engine: AsyncEngine) -> tuple[str, str]:
    async with make_session_factory(engine)() as db:
        name = unique()
        user = User(id=new_id(), username=name, password_hash="unused")
        db.add(user)
        await db.commit()
        return user.id, name


async def make_item(engine: AsyncEngine, owner_id: str, kind: str = "document") -> str:
    async with make_session_factory(engine)() as db:
        return (await service.create_item(db, owner_id, "item", None, kind)).id


@pytest.fixture(params=["own", "session"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """`own`: the state writer's own connection; `session`: SQLAlchemy's pool."""
    return str(request.param)


def state_store(url: str, engine: AsyncEngine, kind: str, max_bytes: int, keep: int) -> StateStore:
    factory = make_session_factory(engine)
    if kind == "session":
        return SessionStateStore(factory, max_bytes, keep)
    store = state_store_for(
        url, factory, max_bytes=max_bytes, keep=keep, sqlite_synchronous="NORMAL"
    )
    assert not isinstance(store, SessionStateStore)
    return store


async def store_once(store: StateStore, changes: Sequence[Change]) -> list[Outcome]:
    await store.open()
    try:
        return list(await store.store(changes))
    finally:
        await store.close()


Apply = Callable[..., Awaitable[list[Outcome]]]


@pytest.fixture
def apply(database_url: str, engine: AsyncEngine, store_kind: str) -> Apply:
    """`await apply(*changes, max_bytes=..., keep=...)`: one group, one transaction."""

    async def go(*changes: Change, max_bytes: int = 65536, keep: int = 100) -> list[Outcome]:
        store = state_store(database_url, engine, store_kind, max_bytes, keep)
        return await store_once(store, changes)

    return go


async def current(engine: AsyncEngine, item_id: str) -> StoredState:
    async with make_session_factory(engine)() as db:
        return await read_state(db, item_id)


def patch(item_id: str, user: tuple[str, str], *ops: dict[str, object]) -> Change:
    return Change(item_id, user[0], user[1], "ops", list(ops))


def move(item_id: str, user: tuple[str, str], cell: object) -> Change:
    return Change(item_id, user[0], user[1], "action", {"move": cell})


async def test_a_new_item_has_its_kinds_initial_state_at_version_0(engine: AsyncEngine) -> None:
    owner = await make_user(engine)
    doc = await make_item(engine, owner[0])
    game = await make_item(engine, owner[0], "tictactoe")
    assert await current(engine, doc) == StoredState(doc, "document", 0, "{}")
    state = await current(engine, game)
    assert (state.kind, state.version) == ("tictactoe", 0)
    assert orjson.loads(state.state) == {
        "board": [None] * 9,
        "players": {"X": owner[1], "O": None},
        "turn": "X",
        "winner": None,
    }


async def test_changes_in_one_group_apply_one_after_another(
    engine: AsyncEngine, apply: Apply
) -> None:
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    add = {"op": "add", "path": "/n", "value": 1}
    inc = ({"op": "test", "path": "/n", "value": 1}, {"op": "replace", "path": "/n", "value": 2})
    results = await apply(patch(item, owner, add), patch(item, owner, *inc))
    assert [(r.version, orjson.loads(r.state)) for r in results] == [(1, {"n": 1}), (2, {"n": 2})]
    assert all(r.sender == owner[1] for r in results)
    assert (await current(engine, item)).version == 2


async def test_refusals_change_nothing(engine: AsyncEngine, apply: Apply) -> None:
    owner, reader, stranger = [await make_user(engine) for _ in range(3)]
    item = await make_item(engine, owner[0])
    async with make_session_factory(engine)() as db:
        await service.set_member(db, item, owner[0], reader[1], Role.reader)
    await apply(patch(item, owner, {"op": "add", "path": "/a", "value": [1]}))
    before = await current(engine, item)
    refused = await apply(
        patch(item, owner, {"op": "test", "path": "/a", "value": [2]}),
        patch(item, owner, {"op": "remove", "path": "/missing"}),
        patch(item, owner, {"op": "jump", "path": "/a"}),
        Change(item, owner[0], owner[1], "action", {"move": 1}),
        patch(item, reader, {"op": "add", "path": "/b", "value": 1}),
        patch(item, stranger, {"op": "add", "path": "/b", "value": 1}),
        patch(item, owner, {"op": "add", "path": "/big", "value": "x" * 200}),
        patch(item, owner, {"op": "replace", "path": "", "value": [1, 2]}),
        max_bytes=100,
    )
    kinds = [type(r) for r in refused]
    assert kinds == [Conflict, Invalid, Invalid, Invalid, Forbidden, NotFound, TooLarge, Invalid]
    assert await current(engine, item) == before
    # A refused change between accepted ones leaves no gap.
    mixed = await apply(
        patch(item, owner, {"op": "add", "path": "/b", "value": 1}),
        patch(item, owner, {"op": "test", "path": "/b", "value": 0}),
        patch(item, owner, {"op": "add", "path": "/c", "value": 1}),
    )
    assert [getattr(r, "version", None) for r in mixed] == [2, None, 3]


async def test_a_missing_item_is_not_found(engine: AsyncEngine, apply: Apply) -> None:
    owner = await make_user(engine)
    (result,) = await apply(patch("nope", owner, {"op": "add", "path": "/a", "value": 1}))
    assert isinstance(result, NotFound)


async def test_tictactoe_rules_are_enforced_in_the_store(engine: AsyncEngine, apply: Apply) -> None:
    owner, writer, other = [await make_user(engine) for _ in range(3)]
    game = await make_item(engine, owner[0], "tictactoe")
    async with make_session_factory(engine)() as db:
        await service.set_member(db, game, owner[0], writer[1], Role.writer)
        await service.set_member(db, game, owner[0], other[1], Role.writer)
    results = await apply(
        move(game, writer, 0),  # X moves first
        move(game, owner, 0),
        move(game, writer, 0),  # taken
        move(game, writer, 3),  # becomes O
        move(game, other, 4),  # O is taken by now
        move(game, owner, 1),
        move(game, writer, 4),
        move(game, owner, 2),  # three in a row
        move(game, writer, 5),
        Change(game, owner[0], owner[1], "ops", []),
    )
    outcome = [r.version if isinstance(r, StoredState) else r.reason for r in results]
    assert outcome == [
        "not your turn",
        1,
        "cell 0 is taken",
        2,
        "not a player",
        3,
        4,
        5,
        "the game is over",
        "a tictactoe item is changed by 'action'",
    ]
    assert all(isinstance(r, StoredState | Illegal | Invalid) for r in results)
    final = orjson.loads((await current(engine, game)).state)
    assert final["winner"] == "X" and final["turn"] is None
    assert final["players"] == {"X": owner[1], "O": writer[1]}


async def test_history_keeps_the_last_versions_only(engine: AsyncEngine, apply: Apply) -> None:
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    for n in range(7):
        await apply(patch(item, owner, {"op": "add", "path": "/n", "value": n}), keep=3)
    await apply(
        *[patch(item, owner, {"op": "add", "path": "/m", "value": n}) for n in range(5)],
        keep=3,
    )
    async with make_session_factory(engine)() as db:
        kept = list(
            await db.scalars(
                select(StateChange.version)
                .where(StateChange.item_id == item)
                .order_by(StateChange.version)
            )
        )
    assert kept == [10, 11, 12]


async def test_history_is_pruned_in_steps_of_a_tenth(engine: AsyncEngine, apply: Apply) -> None:
    """With `keep` 20, deleting happens every 2 versions: the last 20 are always kept,
    never more than 21."""
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    for n in range(1, 31):
        await apply(patch(item, owner, {"op": "add", "path": "/n", "value": n}), keep=20)
        async with make_session_factory(engine)() as db:
            kept = list(
                await db.scalars(
                    select(StateChange.version)
                    .where(StateChange.item_id == item)
                    .order_by(StateChange.version)
                )
            )
        assert kept[-min(n, 20) :] == list(range(max(1, n - 19), n + 1))
        assert len(kept) <= 21
    assert kept == list(range(11, 31))


async def test_racing_writers_on_many_connections_get_contiguous_versions(
    database_url: str, engine: AsyncEngine, store_kind: str, apply: Apply
) -> None:
    """8 writers, each with a store and an engine of its own (as on 8 workers), 50 patches
    each: every patch appends an entry and tests the length it read, as optimistic
    clients do."""
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    await apply(patch(item, owner, {"op": "add", "path": "/log", "value": []}))
    writers = 8
    per_writer = 50
    engines = [make_engine(database_url) for _ in range(writers)]

    async def write(w: int, own: AsyncEngine) -> tuple[list[str], list[str], list[int]]:
        acked: list[str] = []
        refused: list[str] = []
        versions: list[int] = []
        store = state_store(database_url, own, store_kind, 65536, 1000)
        await store.open()
        try:
            await race(w, own, store, acked, refused, versions)
        finally:
            await store.close()
        return acked, refused, versions

    async def race(
        w: int,
        own: AsyncEngine,
        store: StateStore,
        acked: list[str],
        refused: list[str],
        versions: list[int],
    ) -> None:
        for n in range(per_writer):
            seen = orjson.loads((await current(own, item)).state)
            entry = f"{w}-{n}"
            change = patch(
                item,
                owner,
                {"op": "test", "path": "/count", "value": len(seen["log"])}
                if "count" in seen
                else {"op": "test", "path": "/log", "value": seen["log"]},
                {"op": "add", "path": "/log/-", "value": entry},
                {"op": "add", "path": "/count", "value": len(seen["log"]) + 1},
            )
            (result,) = await store.store([change])
            if isinstance(result, StoredState):
                acked.append(entry)
                versions.append(result.version)
            else:
                assert isinstance(result, Conflict), result
                refused.append(entry)

    try:
        results = await asyncio.gather(*(write(w, e) for w, e in enumerate(engines)))
    finally:
        for own in engines:
            await own.dispose()
    acked = [e for a, _, _ in results for e in a]
    refused = [e for _, r, _ in results for e in r]
    versions = sorted(v for _, _, vs in results for v in vs)
    assert len(acked) + len(refused) == writers * per_writer
    assert acked, "some patches must win"
    final = await current(engine, item)
    log = orjson.loads(final.state)["log"]
    assert sorted(log) == sorted(acked)
    assert not set(refused) & set(log)
    assert versions == list(range(2, final.version + 1))
    assert final.version == 1 + len(acked)
    async with make_session_factory(engine)() as db:
        stored = await db.scalar(
            select(func.count()).select_from(StateChange).where(StateChange.item_id == item)
        )
    assert stored == final.version
