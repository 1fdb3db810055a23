"""Every presence backend counts the same way: one suite, run on memory and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from api.realtime.backends import presence_from_url
from api.realtime.presence import Presence
from tests.realtime.backends import BACKEND_URLS


@pytest.fixture(params=BACKEND_URLS)
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[Presence]:
    presence = presence_from_url(request.param)
    await presence.start()
    try:
        yield presence
    finally:
        await presence.close()


def item() -> str:
    return f"contract-{uuid.uuid4().hex}"


async def test_a_user_joins_with_their_first_socket_and_leaves_with_their_last(
    presence: Presence,
) -> None:
    on = item()
    assert await presence.join(on, "alice", 1) == 1
    assert await presence.join(on, "alice", 2) is None
    assert await presence.join(on, "bob", 3) == 2
    assert await presence.leave(on, "alice", 1) is None
    assert await presence.leave(on, "alice", 2) == 1
    assert await presence.leave(on, "bob", 3) == 0
    assert await presence.users(on) == []


async def test_users_are_listed_in_code_point_order(presence: Presence) -> None:
    on = item()
    for key, name in enumerate(["bob", "Zed", "alice", "Émile"]):
        await presence.join(on, name, key)
    assert await presence.users(on) == ["Zed", "alice", "bob", "Émile"]


async def test_leaving_an_unknown_socket_changes_nothing(presence: Presence) -> None:
    on = item()
    assert await presence.join(on, "alice", 1) == 1
    assert await presence.leave(on, "alice", 99) is None
    assert await presence.users(on) == ["alice"]
    assert await presence.leave(on, "alice", 1) == 0


async def test_items_are_counted_separately(presence: Presence) -> None:
    first, second = item(), item()
    assert await presence.join(first, "alice", 1) == 1
    assert await presence.join(second, "alice", 2) == 1
    assert await presence.leave(first, "alice", 1) == 0
    assert await presence.users(second) == ["alice"]
    await presence.leave(second, "alice", 2)


async def test_resync_keeps_this_process_share(presence: Presence) -> None:
    on = item()
    await presence.join(on, "alice", 1)
    await presence.resync()
    assert await presence.users(on) == ["alice"]
    assert await presence.leave(on, "alice", 1) == 0
