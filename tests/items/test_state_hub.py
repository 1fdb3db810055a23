"""The state hub on its own: a real store, the in-process broker, recording outboxes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api import migrate
from api.db import make_engine, make_session_factory
from api.items.state import Change, StoredState, apply_many
from api.items.state_hub import StateHub
from api.realtime.memory import MemoryBroker
from tests.items.test_state_store import make_item, make_user


class Recorder:
    """Stands in for a socket's outbox: keeps what the hub hands it."""

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        self.versions: list[int] = []
        self.closed: tuple[int, str] | None = None
        self.arrived = asyncio.Event()

    def push(self, seq: int, frame: str) -> None:
        self.versions.append(orjson.loads(frame)["version"])
        self.arrived.set()

    def request_close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def wait_for(self, version: int) -> None:
        while not self.versions or self.versions[-1] < version:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def hub(engine: AsyncEngine) -> AsyncIterator[StateHub]:
    # A poll interval long enough never to run by itself: the tests call poll().
    hub = StateHub(MemoryBroker(), make_session_factory(engine), poll_interval=3600)
    await hub.start()
    yield hub
    await hub.stop()


async def store_silently(
    engine: AsyncEngine, item: str, user: Any, n: int, keep: int
) -> list[StoredState]:
    """n changes stored without telling the broker, as if their publishes were delayed."""
    changes = [
        Change(item, user[0], user[1], "ops", [{"op": "add", "path": "/n", "value": i}])
        for i in range(n)
    ]
    async with make_session_factory(engine)() as db:
        results = await apply_many(db, changes, 65536, keep)
    assert all(isinstance(r, StoredState) for r in results)
    return results  # type: ignore[return-value]


async def test_a_socket_joining_while_deliveries_lag_gets_no_old_versions_and_no_close(
    engine: AsyncEngine, hub: StateHub
) -> None:
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    early, late = Recorder(item), Recorder(item)
    assert orjson.loads(await hub.attach(early))["version"] == 0  # type: ignore[arg-type]
    # 20 versions stored, only the last 5 kept, none announced yet: the hub lags behind.
    stored = await store_silently(engine, item, owner, 20, keep=5)
    snapshot = orjson.loads(await hub.attach(late))  # type: ignore[arg-type]
    assert snapshot["version"] == 20 and "sender" not in snapshot
    for change in stored:  # the announcements arrive, late but in order
        await hub.publish(change)
    await early.wait_for(20)
    assert early.versions == list(range(1, 21))
    # The late socket needs none of them; a later version reaches both.
    (more,) = await store_silently(engine, item, owner, 1, keep=5)
    await hub.publish(more)
    await late.wait_for(21)
    await early.wait_for(21)
    assert late.versions == [21]
    assert early.closed is None and late.closed is None


async def test_the_poll_fills_what_the_broker_did_not_bring_a_poll_later(
    engine: AsyncEngine, hub: StateHub
) -> None:
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    socket = Recorder(item)
    await hub.attach(socket)
    await store_silently(engine, item, owner, 3, keep=100)
    await hub.poll()  # just stored: the broker may still bring them
    assert socket.versions == []
    await hub.poll()  # a poll interval later: lost, read back from the store
    assert socket.versions == [1, 2, 3]


async def test_versions_no_longer_kept_close_the_sockets_for_a_fresh_snapshot(
    engine: AsyncEngine, hub: StateHub
) -> None:
    owner = await make_user(engine)
    item = await make_item(engine, owner[0])
    socket = Recorder(item)
    await hub.attach(socket)
    stored = await store_silently(engine, item, owner, 10, keep=3)
    await hub.publish(stored[-1])  # reveals a gap of 9 versions, 7 of them pruned
    while socket.closed is None:
        await asyncio.sleep(0.01)
    assert socket.closed == (1013, "store unavailable")
    assert socket.versions == []
