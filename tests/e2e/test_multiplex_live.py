"""`WS /ws` while open (CONTRACT §4b, §4c): presence, revocations, limits, state."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.multiplexed import (
    item_error,
    open_ws,
    presence_of,
    ready_frame,
    send,
    subscribe,
    subscribed_frame,
    unsubscribed_frame,
    ws_url,
)
from tests.e2e.test_fanout import BIG, drain_after_overflow, overflows, rest_publisher, split
from tests.servers import LiveServer
from tests.support import (
    TIMEOUT,
    Api,
    User,
    closed,
    eventually,
    message_frame,
    of_type,
    ping_barrier,
    presence,
    presence_frame,
    read_until,
    ready,
    recv,
    started,
)

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


def is_presence(frame: dict[str, Any]) -> bool:
    return frame["type"] == "presence"


async def online(api: Api, viewer: User, item: str, users: list[str]) -> None:
    expected = {"count": len(users), "users": sorted(users)}

    async def check() -> bool:
        return await presence(api, viewer, item) == expected

    await eventually(check)


# Presence.


async def test_a_subscription_joins_after_subscribed_and_leaves_on_unsubscribe(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)
        assert await recv(ws) == presence_of(item, "join", alice.username, 1)
        await online(api, alice, item, [alice.username])
        await send(ws, "unsubscribe", item_id=item)
        assert await recv(ws) == unsubscribed_frame(item, "requested")
        await online(api, alice, item, [])
        # Its own leave is not sent to it: it no longer follows the item.
        assert of_type(await ping_barrier(ws), "presence") == []


async def test_sockets_and_subscriptions_count_together(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    item = await api.item(alice)
    await api.share(alice, item, bob, "writer")
    watcher, _ = await ready(api.server, item, bob.token)  # an item socket sees it all
    async with watcher:
        assert await recv(watcher) == presence_frame("join", bob.username, 1)
        channel, _ = await ready(api.server, item, alice.token)
        assert await recv(watcher) == presence_frame("join", alice.username, 2)
        ws, _ = await open_ws(api.server, alice.token)
        second, _ = await open_ws(api.server, alice.token)
        async with ws, second:
            # Alice is online already: her subscriptions are no join.
            assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)
            assert await subscribe(second, item) == subscribed_frame(item, "owner", 0)
            await channel.close()
            await send(ws, "unsubscribe", item_id=item)
            await read_until(ws, "unsubscribed")
            # A barrier: a message published after, read by the watcher.
            await api.post(bob, item, "barrier")
            frames = await read_until(watcher, "message")
            assert of_type(frames, "presence") == []
            await online(api, bob, item, [alice.username, bob.username])
            # Her last subscription goes with its socket: she leaves, once.
            await second.close()
            frames = await read_until(watcher, is_presence)
            assert frames[-1] == presence_frame("leave", alice.username, 1)
            await online(api, bob, item, [bob.username])
            # Frames on /ws name their item; a subscriber sees others come and go.
            assert await subscribe(ws, item) == subscribed_frame(item, "owner", 1)
            assert await recv(ws) == presence_of(item, "join", alice.username, 2)
            await watcher.close()
            frames = await read_until(ws, is_presence)
            assert frames[-1] == presence_of(item, "leave", bob.username, 1)


async def test_closing_the_socket_leaves_every_item(api: Api) -> None:
    alice = await api.user()
    items = [await api.item(alice) for _ in range(3)]
    ws, _ = await open_ws(api.server, alice.token)
    async with ws:
        for item in items:
            await subscribe(ws, item)
        for item in items:
            await online(api, alice, item, [alice.username])
    for item in items:
        await online(api, alice, item, [])


# Revocations.


async def test_removal_ends_that_subscription_only(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    lost, kept = await api.item(alice), await api.item(alice)
    for item in (lost, kept):
        await api.share(alice, item, bob, "writer")
    ws, _ = await open_ws(api.server, bob.token)
    async with ws:
        await subscribe(ws, lost)
        await subscribe(ws, kept)
        async with api.client(alice) as client:
            await client.remove_member(lost, bob.username)
        frames = await read_until(ws, "unsubscribed")
        assert frames[-1] == unsubscribed_frame(lost, "forbidden")
        await api.post(alice, lost, "secret")
        await api.post(alice, kept, "still")
        frames = await read_until(ws, "message")
        assert frames[-1] == message_frame(kept, 1, alice.username, "still")
        assert [f for f in await ping_barrier(ws) if f.get("item_id") == lost] == []
        # Subscribing again is refused now; the socket stays.
        assert await subscribe(ws, lost) == item_error("forbidden", lost)
        await online(api, alice, lost, [])


async def test_deletion_ends_that_subscription_only(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    doomed, kept = await api.item(alice), await api.item(alice)
    await api.share(alice, doomed, bob, "reader")
    await api.share(alice, kept, bob, "reader")
    ws, _ = await open_ws(api.server, bob.token)
    mine, _ = await open_ws(api.server, alice.token)
    async with ws, mine:
        for socket_ in (ws, mine):
            await subscribe(socket_, doomed)
            await subscribe(socket_, kept)
        r = await api.http.delete(f"/items/{doomed}", headers=alice.headers)
        assert r.status_code == 204
        for socket_ in (ws, mine):
            frames = await read_until(socket_, "unsubscribed")
            assert frames[-1] == unsubscribed_frame(doomed, "forbidden")
        await api.post(alice, kept, "on")
        for socket_ in (ws, mine):
            frames = await read_until(socket_, "message")
            assert frames[-1] == message_frame(kept, 1, alice.username, "on")


# Limits.


async def test_subscriptions_per_socket_are_capped(make_server: MakeServer) -> None:
    async with started(make_server, max_subscriptions=2) as api:
        alice = await api.user()
        items = [await api.item(alice) for _ in range(3)]
        ws, hello = await open_ws(api.server, alice.token)
        async with ws:
            assert hello == ready_frame(alice, max_subscriptions=2)
            for item in items[:2]:
                assert (await subscribe(ws, item))["type"] == "subscribed"
            refused = await subscribe(ws, items[2], ref="3")
            assert refused == item_error("too_many_subscriptions", items[2], "3")
            await send(ws, "unsubscribe", item_id=items[0])
            await read_until(ws, "unsubscribed")
            assert (await subscribe(ws, items[2]))["type"] == "subscribed"


async def test_subscribes_spend_the_frame_budget(make_server: MakeServer) -> None:
    async with started(make_server, ws_publish_rate=0.5, ws_publish_burst=3) as api:
        alice = await api.user()
        items = [await api.item(alice) for _ in range(4)]
        ws, _ = await open_ws(api.server, alice.token)
        async with ws:
            await send(ws, "publish", item_id=items[0], data=1, ref="p")
            assert (await read_until(ws, "ack"))[-1]["ref"] == "p"
            assert (await subscribe(ws, items[0]))["type"] == "subscribed"
            assert (await subscribe(ws, items[1]))["type"] == "subscribed"
            limited = await subscribe(ws, items[2], ref="s")
            assert limited == item_error("rate_limited", items[2], "s")
            await send(ws, "publish", item_id=items[3], data=1, ref="q")
            frames = await read_until(ws, lambda f: f.get("ref") == "q")
            assert frames[-1] == item_error("rate_limited", items[3], "q")


async def test_sockets_per_user_count_ws_sockets(make_server: MakeServer) -> None:
    async with started(make_server, max_sockets_per_user=1) as api:
        alice = await api.user()
        ws, _ = await open_ws(api.server, alice.token)
        async with ws:
            url = ws_url(api.server.ws_url, token=alice.token)
            async with connect(url, open_timeout=TIMEOUT) as extra:
                assert await closed(extra) == (1013, "too many sockets")


async def stuck_ws(server: LiveServer, token: str, item: str) -> ClientConnection:
    """A `/ws` socket subscribed to `item` that then stops reading (a tiny receive
    buffer, `max_queue=1`): never `recv` on it until the test wants it to catch up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), TIMEOUT)
        ws = await connect(
            ws_url(server.ws_url, token=token),
            sock=sock,
            max_queue=1,
            compression=None,
            open_timeout=TIMEOUT,
        )
    except BaseException:
        sock.close()
        raise
    assert (await recv(ws))["type"] == "ready"
    assert (await subscribe(ws, item))["type"] == "subscribed"
    return ws


async def test_overflow_closes_1013_and_resubscribing_with_since_loses_nothing(
    make_server: MakeServer,
) -> None:
    count = 150
    async with started(make_server, ws_queue_size=16, max_message_bytes=128 * 1024) as api:
        owner = await api.user()
        item = await api.item(owner)
        stuck = await stuck_ws(api.server, owner.token, item)
        draining: asyncio.Task[Any] | None = None
        try:
            before = await overflows(api)
            draining = asyncio.create_task(drain_after_overflow(api, stuck, before))
            payloads = [{"n": n, "blob": "b" * BIG} for n in range(count)]
            await asyncio.gather(*(rest_publisher(api, owner, item, p) for p in split(payloads, 2)))
            seen, code, reason = await draining
            assert (code, reason) == (1013, "slow consumer")
            seqs = [f["seq"] for f in seen if f["type"] == "message"]
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) < count
        finally:
            if draining is not None and not draining.done():
                draining.cancel()
            await stuck.close()
        last = len(seqs)
        ws, _ = await open_ws(api.server, owner.token, compression=None, max_size=None)
        async with ws:
            answer = await subscribe(ws, item, since=last)
            assert answer == subscribed_frame(item, "owner", count, True)
            frames = await read_until(ws, lambda f: f.get("seq") == count, 60)
            assert [f["seq"] for f in of_type(frames, "message")] == list(
                range(last + 1, count + 1)
            )


# State (§4c over /ws).


async def new_item(api: Api, owner: User, kind: str = "document") -> str:
    r = await api.http.post("/items", json={"name": "s", "kind": kind}, headers=owner.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_state_on_ws(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    doc = await new_item(api, alice)
    plain = await api.item(alice)
    await api.share(alice, doc, bob, "reader")
    ws, _ = await open_ws(api.server, alice.token)
    watcher, _ = await open_ws(api.server, bob.token)
    async with ws, watcher:
        assert await subscribe(ws, doc, state=True) == subscribed_frame(doc, "owner", 0)
        assert await recv(ws) == {"type": "state", "item_id": doc, "version": 0, "state": {}}
        assert await subscribe(ws, plain) == subscribed_frame(plain, "owner", 0)
        assert await subscribe(watcher, doc) == subscribed_frame(doc, "reader", 0)  # no state
        add = [{"op": "add", "path": "/n", "value": 1}]
        await send(ws, "patch", item_id=doc, ops=add, ref="p1")
        frames = await read_until(ws, lambda f: f.get("ref") == "p1")
        assert frames[-1] == {"type": "ack", "item_id": doc, "ref": "p1", "version": 1}
        frames += await read_until(ws, "state")
        assert of_type(frames, "state") == [
            {
                "type": "state",
                "item_id": doc,
                "version": 1,
                "state": {"n": 1},
                "sender": alice.username,
            }
        ]
        refusals = {
            "c": ({"type": "patch", "ops": [{"op": "test", "path": "/n", "value": 2}]}, "conflict"),
            "b": ({"type": "patch", "ops": [{"op": "remove", "path": "/x"}]}, "bad_request"),
            "k": ({"type": "action", "action": {"move": 1}}, "bad_request"),
        }
        for ref, (frame, code) in refusals.items():
            await ws.send(json.dumps({**frame, "item_id": doc, "ref": ref}))
            answer = (await read_until(ws, lambda f, r=ref: f.get("ref") == r))[-1]  # type: ignore[misc]
            assert answer == item_error(code, doc, ref)
        await send(watcher, "patch", item_id=doc, ops=add, ref="r")
        answer = (await read_until(watcher, lambda f: f.get("ref") == "r"))[-1]
        assert answer == item_error("forbidden", doc, "r")
        await send(watcher, "patch", item_id="no-such-item", ops=add, ref="n")
        answer = (await read_until(watcher, lambda f: f.get("ref") == "n"))[-1]
        assert answer == item_error("forbidden", "no-such-item", "n")
        assert of_type(await ping_barrier(watcher), "state") == []
        assert of_type(await ping_barrier(ws), "state", "error") == []


async def test_a_game_over_ws(api: Api) -> None:
    x, o = await api.user(), await api.user()
    game = await new_item(api, x, "tictactoe")
    await api.share(x, game, o, "writer")
    ws_x, _ = await open_ws(api.server, x.token)
    ws_o, _ = await open_ws(api.server, o.token)
    async with ws_x, ws_o:
        for ws in (ws_x, ws_o):
            await subscribe(ws, game, state=True)
            assert (await read_until(ws, "state"))[-1]["version"] == 0
        await send(ws_o, "action", item_id=game, action={"move": 4}, ref="early")
        answer = (await read_until(ws_o, lambda f: f.get("ref") == "early"))[-1]
        assert answer == item_error("illegal", game, "early")
        await send(ws_x, "action", item_id=game, action={"move": 4}, ref="x1")
        answer = (await read_until(ws_x, lambda f: f.get("ref") == "x1"))[-1]
        assert answer == {"type": "ack", "item_id": game, "ref": "x1", "version": 1}
        for ws in (ws_x, ws_o):
            frame = (await read_until(ws, "state"))[-1]
            assert frame["item_id"] == game and frame["version"] == 1
            assert frame["state"]["board"][4] == "X" and frame["sender"] == x.username


async def test_state_snapshot_then_every_version_while_others_change(api: Api) -> None:
    alice = await api.user()
    doc = await new_item(api, alice)
    changes = 30

    async def writer() -> None:
        async with httpx.AsyncClient(base_url=api.server.base_url, timeout=30) as http:
            for n in range(changes):
                ops = [{"op": "add", "path": f"/k{n}", "value": n}]
                r = await http.post(f"/items/{doc}/state", json={"ops": ops}, headers=alice.headers)
                assert r.status_code == 200, r.text

    writing = asyncio.create_task(writer())
    try:
        ws, _ = await open_ws(api.server, alice.token)
        async with ws:
            await asyncio.sleep(0.05)
            await subscribe(ws, doc, state=True)
            first = await recv(ws)
            assert first["type"] == "state"
            versions = [first["version"]]
            await writing
            while versions[-1] < changes:
                frame = await recv(ws)
                if frame["type"] == "state":
                    versions.append(frame["version"])
            assert versions == list(range(versions[0], changes + 1))
    finally:
        if not writing.done():
            writing.cancel()
