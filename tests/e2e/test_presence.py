"""Presence: a user joins with their first socket on an item and leaves with their last."""

from __future__ import annotations

import uuid

from websockets.asyncio.client import ClientConnection

from tests.support import (
    Api,
    User,
    eventually,
    message_frame,
    of_type,
    presence,
    presence_frame,
    publish,
    read_until,
    ready,
    ready_frame,
    recv,
)


def is_message(frame: dict[str, object]) -> bool:
    return frame["type"] == "message"


def is_presence(frame: dict[str, object]) -> bool:
    return frame["type"] == "presence"


async def presence_is(api: Api, viewer: User, item: str, users: list[str]) -> None:
    """Wait until GET presence answers exactly these users (bounded)."""
    expected = {"count": len(users), "users": users}

    async def check() -> bool:
        return await presence(api, viewer, item) == expected

    await eventually(check)


async def test_first_socket_joins_after_ready(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, hello = await ready(api.server, item, owner.token)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 0)
        assert await recv(ws) == presence_frame("join", owner.username, 1)
        await presence_is(api, owner, item, [owner.username])
    await presence_is(api, owner, item, [])


async def test_second_socket_of_a_user_neither_joins_nor_leaves(api: Api) -> None:
    alice = await api.user()
    bob = await api.user()
    item = await api.item(alice)
    await api.share(alice, item, bob, "writer")
    first, _ = await ready(api.server, item, alice.token)
    second: ClientConnection | None = None
    watcher: ClientConnection | None = None
    try:
        assert await recv(first) == presence_frame("join", alice.username, 1)
        second, _ = await ready(api.server, item, alice.token)
        # A publish from the second socket, read after it was counted in presence, is
        # a barrier: a join for it would have been broadcast before the message.
        await publish(second, "from the second socket", ref="b1")
        frames = await read_until(first, is_message)
        assert frames == [message_frame(item, 1, alice.username, "from the second socket")]
        frames = await read_until(second, is_message)
        assert of_type(frames, "presence") == []

        watcher, _ = await ready(api.server, item, bob.token)
        assert await recv(watcher) == presence_frame("join", bob.username, 2)
        for ws in (first, second):
            frames = await read_until(ws, is_presence)
            assert of_type(frames, "presence") == [presence_frame("join", bob.username, 2)]
        await presence_is(api, bob, item, sorted([alice.username, bob.username]))

        # Closing one of alice's two sockets: she stays online.
        await first.close()
        await presence(api, bob, item)  # a round trip while the close is handled
        await publish(watcher, "barrier", ref="b2")
        frames = await read_until(watcher, is_message)
        assert of_type(frames, "presence", "message") == [
            message_frame(item, 2, bob.username, "barrier")
        ]
        assert await presence(api, bob, item) == {
            "count": 2,
            "users": sorted([alice.username, bob.username]),
        }

        # Closing her last one: she leaves, once.
        await second.close()
        frames = await read_until(watcher, is_presence)
        assert frames == [presence_frame("leave", alice.username, 1)]
        await presence_is(api, bob, item, [bob.username])
        await publish(watcher, "after", ref="b3")
        frames = await read_until(watcher, is_message)
        assert of_type(frames, "presence") == []
    finally:
        for ws in (first, second, watcher):
            if ws is not None:
                await ws.close()
    await presence_is(api, alice, item, [])


async def test_other_sockets_see_joins_and_leaves(api: Api) -> None:
    owner = await api.user()
    writer = await api.user()
    reader = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, writer, "writer")
    await api.share(owner, item, reader, "reader")
    ws_owner, _ = await ready(api.server, item, owner.token)
    async with ws_owner:
        assert await recv(ws_owner) == presence_frame("join", owner.username, 1)
        ws_writer, hello = await ready(api.server, item, writer.token)
        async with ws_writer:
            assert hello == ready_frame(item, writer, "writer", 0)
            # The joining socket gets its own join, after its ready; others get it too.
            assert await recv(ws_writer) == presence_frame("join", writer.username, 2)
            assert await recv(ws_owner) == presence_frame("join", writer.username, 2)
            ws_reader, _ = await ready(api.server, item, reader.token)
            async with ws_reader:
                join = presence_frame("join", reader.username, 3)
                for ws in (ws_reader, ws_writer, ws_owner):
                    assert await recv(ws) == join
            leave = presence_frame("leave", reader.username, 2)
            for ws in (ws_writer, ws_owner):
                assert await recv(ws) == leave
        assert await recv(ws_owner) == presence_frame("leave", writer.username, 1)
        await presence_is(api, owner, item, [owner.username])


async def test_presence_is_per_item(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    other_item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        await presence_is(api, owner, item, [owner.username])
        assert await presence(api, owner, other_item) == {"count": 0, "users": []}


async def test_get_presence_counts_users_sorted_by_code_point(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    tag = uuid.uuid4().hex[:10]
    # Code-point order: "-" < digits < upper case < "_" < lower case. (Names are unique
    # without regard to case, and may not begin with a dot.)
    names = [f"{p}{tag}" for p in ("b", "C", "_", "a", "9", "-", "Z")]
    members = [await api.user(name) for name in names]
    for member in members:
        await api.share(owner, item, member, "reader")
    sockets = [(await ready(api.server, item, m.token))[0] for m in members]
    # A second socket of one user counts once.
    sockets.append((await ready(api.server, item, members[0].token))[0])
    try:
        expected = sorted(names)
        assert expected[:4] == [f"-{tag}", f"9{tag}", f"C{tag}", f"Z{tag}"]
        await presence_is(api, owner, item, expected)
        assert await presence(api, members[1], item) == {"count": 7, "users": expected}
        # Strangers get the same 404 whether the item exists or not.
        stranger = await api.user()
        r = await api.http.get(f"/items/{item}/presence", headers=stranger.headers)
        assert r.status_code == 404
    finally:
        for ws in sockets:
            await ws.close()
    await presence_is(api, owner, item, [])


async def test_abrupt_disconnect_leaves_and_leaves_no_ghost(api: Api) -> None:
    owner = await api.user()
    member = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, "writer")
    watcher, _ = await ready(api.server, item, owner.token)
    async with watcher:
        assert await recv(watcher) == presence_frame("join", owner.username, 1)
        dropped, _ = await ready(api.server, item, member.token)
        try:
            assert await recv(dropped) == presence_frame("join", member.username, 2)
            assert await recv(watcher) == presence_frame("join", member.username, 2)
            # Gone without a close frame.
            dropped.transport.abort()
            frames = await read_until(watcher, is_presence)
            assert frames == [presence_frame("leave", member.username, 1)]
            await presence_is(api, owner, item, [owner.username])
        finally:
            await dropped.close()
        # The item still works for those left.
        await api.post(member, item, "still here")
        frames = await read_until(watcher, is_message)
        assert frames == [message_frame(item, 1, member.username, "still here")]
    await presence_is(api, owner, item, [])


async def test_abrupt_disconnect_of_one_of_two_sockets_keeps_the_user(api: Api) -> None:
    owner = await api.user()
    member = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, "writer")
    watcher, _ = await ready(api.server, item, owner.token)
    kept, _ = await ready(api.server, item, member.token)
    dropped, _ = await ready(api.server, item, member.token)
    try:
        await presence_is(api, owner, item, sorted([owner.username, member.username]))
        # Announced (a join and a leave within one presence tick would cancel out).
        await read_until(watcher, lambda f: f.get("user") == member.username)
        dropped.transport.abort()
        await dropped.close()
        await api.post(owner, item, "barrier")
        frames = await read_until(watcher, is_message)
        assert of_type(frames, "presence", "message")[-1] == message_frame(
            item, 1, owner.username, "barrier"
        )
        assert presence_frame("leave", member.username, 1) not in frames
        await kept.close()
        frames = await read_until(watcher, lambda f: f.get("event") == "leave")
        assert frames == [presence_frame("leave", member.username, 1)]
        await presence_is(api, owner, item, [owner.username])
    finally:
        for ws in (watcher, kept, dropped):
            await ws.close()
