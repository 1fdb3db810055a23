"""`WS /ws` frames (CONTRACT §4b): subscriptions, publishes naming their item, resume
per item, several items on one socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.multiplexed import (
    item_error,
    open_ws,
    send,
    subscribe,
    subscribed_frame,
    subscribing,
    unsubscribed_frame,
)
from tests.support import (
    Api,
    User,
    closed,
    history,
    message_frame,
    of_type,
    ping_barrier,
    read_until,
    recv,
)


def answer_to(ref: str) -> Any:
    return lambda f: f.get("ref") == ref


async def answered(ws: ClientConnection, ref: str) -> list[dict[str, Any]]:
    """Frames up to the answer with `ref`."""
    return await read_until(ws, answer_to(ref))


def messages_of(frames: list[dict[str, Any]], item: str) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "message" and f["item_id"] == item]


async def shared(api: Api, owner: User, member: User, role: str) -> str:
    item = await api.item(owner)
    await api.share(owner, item, member, role)
    return item


# subscribe / unsubscribe.


async def test_subscribed_names_the_role_and_last_seq(api: Api) -> None:
    alice, bob, carol = await api.user(), await api.user(), await api.user()
    owned = await api.item(alice)
    writing = await shared(api, bob, alice, "writer")
    reading = await shared(api, carol, alice, "reader")
    for _ in range(3):
        await api.post(bob, writing, "x")
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        assert await subscribe(ws, owned, ref="a") == subscribed_frame(owned, "owner", 0, ref="a")
        assert await subscribe(ws, writing) == subscribed_frame(writing, "writer", 3)
        assert await subscribe(ws, reading) == subscribed_frame(reading, "reader", 0)
        # Without `since`: nothing stored before, only what comes after.
        await api.post(bob, writing, "after")
        frames = await read_until(ws, "message")
        assert frames[-1] == message_frame(writing, 4, bob.username, "after")


async def test_forbidden_is_the_same_for_a_missing_and_a_foreign_item(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    foreign = await api.item(bob)
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        first = await subscribe(ws, foreign, ref="f")
        second = await subscribe(ws, "no-such-item", ref="m")
        assert first == item_error("forbidden", foreign, "f")
        assert second == item_error("forbidden", "no-such-item", "m")
        assert first["detail"] == second["detail"]
        # Nothing changed: the foreign item's messages never arrive.
        await api.post(bob, foreign, "secret")
        assert await ping_barrier(ws) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"item_id": "bad id!"},
        {"item_id": "x" * 65},
        {"item_id": ""},
        {"item_id": 5},
        {},
        {"since": -1},
        {"since": "3"},
        {"since": 1.5},
        {"since": True},
        {"state": "yes"},
    ],
    ids=lambda f: json.dumps(f),
)
async def test_invalid_subscribe_frames_are_bad_requests(api: Api, fields: dict[str, Any]) -> None:
    alice = await api.user()
    item = await api.item(alice)
    frame = {"type": "subscribe", "item_id": item, "ref": "r", **fields}
    if not fields:
        del frame["item_id"]
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await ws.send(json.dumps(frame))
        named = frame.get("item_id")
        expected = item_error("bad_request", named if isinstance(named, str) else None, "r")
        assert await recv(ws) == expected
        # Nothing changed: the item can still be subscribed to.
        assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)


async def test_subscribing_twice_is_a_bad_request(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)
        assert await subscribe(ws, item, ref="again") == item_error("bad_request", item, "again")
        # Still one subscription: a message arrives once.
        await api.post(alice, item, "once")
        frames = await read_until(ws, "message")
        frames += await ping_barrier(ws)
        assert messages_of(frames, item) == [1]


async def test_unsubscribe_ends_the_items_frames(api: Api) -> None:
    alice = await api.user()
    item, other = await api.item(alice), await api.item(alice)
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await subscribe(ws, item)
        await subscribe(ws, other)
        await api.post(alice, item, "before")
        await read_until(ws, "message")
        await send(ws, "unsubscribe", item_id=item, ref="u")
        frames = await answered(ws, "u")
        assert frames[-1] == unsubscribed_frame(item, "requested", "u")
        await api.post(alice, item, "after")
        await api.post(alice, other, "other")
        frames = await read_until(ws, "message")
        frames += await ping_barrier(ws)
        assert [f["item_id"] for f in of_type(frames, "message", "presence")] == [other]
        # Unsubscribing again, or something never subscribed to: bad_request.
        await send(ws, "unsubscribe", item_id=item, ref="u2")
        assert (await answered(ws, "u2"))[-1] == item_error("bad_request", item, "u2")
        await send(ws, "unsubscribe", item_id="never", ref="u3")
        assert (await answered(ws, "u3"))[-1] == item_error("bad_request", "never", "u3")
        # And subscribing again works, with since.
        assert await subscribe(ws, item, since=1) == subscribed_frame(item, "owner", 2, True)
        frames = await read_until(ws, "message")
        assert frames[-1] == message_frame(item, 2, alice.username, "after")


# publish.


async def test_publish_names_its_item_and_needs_no_subscription(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    mine = await api.item(alice)
    theirs = await shared(api, bob, alice, "writer")
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await subscribe(ws, mine)
        await send(ws, "publish", item_id=theirs, data={"k": 1}, ref="t")
        await send(ws, "publish", item_id=mine, data=[1, 2], ref="m")
        frames = await answered(ws, "m")
        acks = of_type(frames, "ack")
        assert acks == [
            {"type": "ack", "item_id": theirs, "ref": "t", "seq": 1},
            {"type": "ack", "item_id": mine, "ref": "m", "seq": 1},
        ]
        frames += await read_until(ws, "message")
        # Only the subscribed item's message is delivered.
        assert of_type(frames, "message") == [message_frame(mine, 1, alice.username, [1, 2])]
    assert [m["data"] for m in await history(api, bob, theirs)] == [{"k": 1}]


async def test_readers_and_strangers_publish_nothing(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    reading = await shared(api, bob, alice, "reader")
    foreign = await api.item(bob)
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await subscribe(ws, reading)
        await send(ws, "publish", item_id=reading, data=1, ref="r")
        assert (await answered(ws, "r"))[-1] == item_error("forbidden", reading, "r")
        await send(ws, "publish", item_id=foreign, data=1, ref="f")
        assert (await answered(ws, "f"))[-1] == item_error("forbidden", foreign, "f")
        await send(ws, "publish", item_id="no-such-item", data=1, ref="n")
        assert (await answered(ws, "n"))[-1] == item_error("forbidden", "no-such-item", "n")
        assert await ping_barrier(ws) == []  # the socket stays open
    assert await history(api, bob, reading) == []
    assert await history(api, bob, foreign) == []


@pytest.mark.parametrize(
    "frame,named",
    [
        ('{"type":"publish","data":1,"ref":"x"}', None),
        ('{"type":"publish","item_id":"a b","data":1,"ref":"x"}', "a b"),
        ('{"type":"publish","item_id":"abc","ref":"x"}', "abc"),
        ('{"type":"nope","item_id":"abc","ref":"x"}', "abc"),
        ('{"type":"nope","ref":"x"}', None),
        ('{"ref":"x"}', None),
        ('{"type":"patch","item_id":"abc","ref":"x"}', "abc"),
    ],
)
async def test_bad_frames_answer_bad_request_naming_the_item(
    api: Api, frame: str, named: str | None
) -> None:
    alice = await api.user()
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await ws.send(frame)
        assert await recv(ws) == item_error("bad_request", named, "x")


async def test_invalid_json_ping_binary_and_size(api: Api) -> None:
    alice = await api.user()
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await ws.send("{not json")
        assert await recv(ws) == item_error("bad_request", None)
        await ws.send("[1]")
        assert await recv(ws) == item_error("bad_request", None)
        await send(ws, "ping")
        assert await recv(ws) == {"type": "pong"}
        await ws.send(b"binary")
        assert await closed(ws) == (1003, "binary frames are not supported")
    ws, _ = await open_ws(api.server, alice.token, max_size=None)
    async with ws:
        big = api.server.settings.max_message_bytes + 1
        await ws.send(json.dumps({"type": "publish", "item_id": "x", "data": "d" * big}))
        code, _ = await closed(ws)
        assert code == 1009


# Resume, per item.


async def test_since_replays_per_item(api: Api) -> None:
    alice = await api.user()
    a, b, c = await api.item(alice), await api.item(alice), await api.item(alice)
    for n in range(5):
        await api.post(alice, a, f"a{n}")
    for n in range(2):
        await api.post(alice, b, f"b{n}")
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        assert await subscribe(ws, a, since=2) == subscribed_frame(a, "owner", 5, True)
        frames = await read_until(ws, lambda f: f.get("seq") == 5)
        assert [f["data"] for f in of_type(frames, "message")] == ["a2", "a3", "a4"]
        assert await subscribe(ws, b, since=0) == subscribed_frame(b, "owner", 2, True)
        frames = await read_until(ws, lambda f: f.get("seq") == 2 and f.get("item_id") == b)
        assert messages_of(frames, b) == [1, 2]
        # `since` at last_seq: nothing; above it: not recovered, nothing replayed.
        assert await subscribe(ws, c, since=0) == subscribed_frame(c, "owner", 0, True)
        await send(ws, "unsubscribe", item_id=b)
        await read_until(ws, "unsubscribed")
        assert await subscribe(ws, b, since=9) == subscribed_frame(b, "owner", 2, False)
        await api.post(alice, b, "b2")
        frames = await read_until(ws, "message")
        assert messages_of(frames, b) == [3]


async def test_resume_per_item_while_others_publish(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    a = await shared(api, alice, bob, "writer")
    b = await shared(api, alice, bob, "writer")
    total = 60
    for n in range(10):
        await api.post(alice, a, n)

    async def publisher(item: str) -> None:
        ws, _ = await open_ws(api.server, bob.token)
        async with ws:
            for n in range(total):
                await send(ws, "publish", item_id=item, data=n, ref=str(n))
                await answered(ws, str(n))

    publishing = asyncio.gather(publisher(a), publisher(b))
    try:
        ws, _ = await open_ws(api.server, alice.token)
        async with ws:
            # Subscribed with since while both items take messages: each item's stream
            # in seq order, without gap or duplicate, whatever the interleaving.
            frames = await subscribing(ws, a, since=3)
            assert frames[-1]["type"] == "subscribed" and frames[-1]["recovered"] is True
            frames += await subscribing(ws, b, since=0)
            assert frames[-1]["type"] == "subscribed" and frames[-1]["recovered"] is True
            seen: dict[str, list[int]] = {a: messages_of(frames, a), b: messages_of(frames, b)}
            await publishing
            while not (seen[a][-1:] == [total + 10] and seen[b][-1:] == [total]):
                frame = await recv(ws)
                if frame["type"] == "message":
                    seen[frame["item_id"]].append(frame["seq"])
            assert seen[a] == list(range(4, total + 11))
            assert seen[b] == list(range(1, total + 1))
    finally:
        if not publishing.done():
            publishing.cancel()


async def test_two_subscriptions_interleave_each_in_order(api: Api) -> None:
    alice = await api.user()
    a, b = await api.item(alice), await api.item(alice)
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        await subscribe(ws, a)
        await subscribe(ws, b)
        for n in range(20):
            await send(ws, "publish", item_id=a if n % 2 else b, data=n, ref=str(n))
        frames = await answered(ws, "19")
        frames += await read_until(
            ws, lambda f: f["type"] == "message" and f["item_id"] == a and f["seq"] == 10
        )
        frames += await ping_barrier(ws)
        assert messages_of(frames, a) == list(range(1, 11))
        assert messages_of(frames, b) == list(range(1, 11))
        assert [f["data"] for f in of_type(frames, "message") if f["item_id"] == a] == list(
            range(1, 20, 2)
        )
        # Answers in the order of the publishes.
        assert [f["ref"] for f in of_type(frames, "ack")] == [str(n) for n in range(20)]
