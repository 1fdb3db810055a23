"""`client.connect()`: many items on one `/ws` socket, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from api.client import Multiplex, PublishError, StateError, SubscribeError
from tests.python_client.conftest import NewClient, Proxy, me, until
from tests.support import unique

Frame = dict[str, Any]


async def frames_until(
    ws: Multiplex, done: Callable[[Frame], bool], timeout: float = 30
) -> list[Frame]:
    """Frames (pong aside) up to and including the first for which `done` holds."""
    got: list[Frame] = []
    async with asyncio.timeout(timeout):
        async for frame in ws:
            got.append(frame)
            if done(frame):
                return got
    raise AssertionError(f"the connection ended after {got}")


def message_of(item_id: str, seq: int) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "message" and (f["item_id"], f["seq"]) == (item_id, seq)


def kinds(frames: list[Frame]) -> list[tuple[str, str]]:
    return [(f["type"], f["item_id"]) for f in frames if f["type"] != "presence"]


async def test_subscribe_publish_and_unsubscribe_on_one_socket(new_client: NewClient) -> None:
    alice = await new_client()
    one = (await alice.create_item("one"))["id"]
    two = (await alice.create_item("two"))["id"]
    await alice.post_message(two, "stored before")
    async with alice.connect() as ws:
        assert ws.ready is not None and ws.ready["user"]["username"] == await me(alice)
        assert ws.max_subscriptions is not None and ws.max_subscriptions >= 2
        first = await ws.subscribe(one)
        assert (first["type"], first["item_id"], first["role"], first["last_seq"]) == (
            "subscribed",
            one,
            "owner",
            0,
        )
        second = await ws.subscribe(two, since=0)
        assert second["recovered"] is True
        with pytest.raises(ValueError, match="already subscribed"):
            await ws.subscribe(one)
        assert await ws.publish(one, {"n": 1}) == 1
        assert await ws.publish(two, {"n": 2}) == 2
        got = await frames_until(ws, message_of(two, 2))
        messages = [(f["item_id"], f["seq"], f["data"]) for f in got if f["type"] == "message"]
        assert sorted(messages) == sorted(
            [(one, 1, {"n": 1}), (two, 1, "stored before"), (two, 2, {"n": 2})]
        )
        assert [f["item_id"] for f in got if f["type"] == "subscribed"] == [one, two]
        assert ws.subscriptions == {one: 1, two: 2}

        await ws.unsubscribe(two)
        assert ws.subscriptions == {one: 1}
        assert await ws.publish(two, "not followed") == 3  # publishing needs no subscription
        await ws.publish(one, "followed")
        rest = await frames_until(ws, message_of(one, 2))
        assert all(f["item_id"] == one for f in rest)
        with pytest.raises(ValueError, match="not subscribed"):
            await ws.unsubscribe(two)


async def test_refusals_name_their_code_and_change_nothing(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("shared"))["id"]
    await alice.add_member(item, await me(bob), "reader")
    async with bob.connect() as ws:
        with pytest.raises(SubscribeError) as stranger:
            await ws.subscribe(unique("nobody-has-it"))
        assert stranger.value.code == "forbidden"
        with pytest.raises(SubscribeError) as bad:
            await ws.subscribe("not an id!")
        assert bad.value.code == "bad_request"
        answer = await ws.subscribe(item)
        assert answer["role"] == "reader"
        with pytest.raises(PublishError) as reader:
            await ws.publish(item, "no")
        assert reader.value.code == "forbidden"
        with pytest.raises(StateError) as changing:
            await ws.patch(item, [{"op": "add", "path": "/a", "value": 1}])
        assert changing.value.code == "forbidden"
        assert ws.subscriptions == {item: 0}
    assert await alice.messages(item) == []
    assert (await alice.state(item))["version"] == 0


async def test_state_frames_and_changes_over_the_socket(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    notes = (await alice.create_item("notes"))["id"]
    game = (await alice.create_item("game", kind="tictactoe"))["id"]
    await alice.add_member(game, await me(bob), "writer")
    async with alice.connect() as ws:
        await ws.subscribe(notes, state=True)
        await ws.subscribe(game, state=True)
        assert await ws.patch(notes, [{"op": "add", "path": "/title", "value": "Plan"}]) == 1
        with pytest.raises(StateError) as conflict:
            await ws.patch(notes, [{"op": "test", "path": "/title", "value": "Old"}])
        assert conflict.value.code == "conflict"
        with pytest.raises(StateError) as wrong:
            await ws.action(notes, {"move": 1})
        assert wrong.value.code == "bad_request"
        assert await ws.action(game, {"move": 4}) == 1
        await bob.action(game, {"move": 0})  # over REST: still a state frame here
        with pytest.raises(StateError) as illegal:
            await ws.action(game, {"move": 0})
        assert illegal.value.code == "illegal" and illegal.value.detail

        def game_version(version: int) -> Callable[[Frame], bool]:
            return lambda f: (
                f["type"] == "state" and (f["item_id"], f["version"]) == (game, version)
            )

        got = await frames_until(ws, game_version(2))
    states = [(f["item_id"], f["version"], f.get("sender")) for f in got if f["type"] == "state"]
    assert [s for s in states if s[0] == notes] == [(notes, 0, None), (notes, 1, await me(alice))]
    assert [s for s in states if s[0] == game] == [
        (game, 0, None),
        (game, 1, await me(alice)),
        (game, 2, await me(bob)),
    ]
    last = next(f for f in reversed(got) if f["type"] == "state" and f["item_id"] == game)
    assert last["state"]["board"][:5] == ["O", None, None, None, "X"]


async def test_drops_resubscribe_with_since_without_gap_or_duplicate(
    new_client: NewClient, proxy: Proxy
) -> None:
    writer = await new_client()
    listener = await new_client(proxy.url)
    items = [(await writer.create_item(f"item {n}"))["id"] for n in range(3)]
    for item in items:
        await writer.add_member(item, await me(listener), "reader")
    per_item = 100

    async def publish_and_cut() -> None:
        for n in range(per_item):
            for item in items:
                await writer.post_message(item, n)
            if n % 30 == 15:
                proxy.cut()

    seen: dict[str, list[int]] = {item: [] for item in items}
    async with listener.connect() as ws:
        for item in items:
            await ws.subscribe(item, state=True)
        publishing = asyncio.create_task(publish_and_cut())
        async with asyncio.timeout(60):
            async for frame in ws:
                if frame["type"] == "message":
                    seen[frame["item_id"]].append(frame["seq"])
                    assert frame["data"] == frame["seq"] - 1
                if all(len(seqs) == per_item for seqs in seen.values()):
                    break
        await publishing
        assert ws.reconnects >= 1
        assert ws.subscriptions == dict.fromkeys(items, per_item)
    assert seen == {item: list(range(1, per_item + 1)) for item in items}


async def test_removed_from_an_item_ends_only_that_subscription(
    new_client: NewClient, proxy: Proxy
) -> None:
    alice = await new_client()
    bob = await new_client(proxy.url)
    bob_name = await me(bob)
    kept, lost, lost_offline = [(await alice.create_item(n))["id"] for n in ("k", "l", "o")]
    for item in (kept, lost, lost_offline):
        await alice.add_member(item, bob_name, "writer")
    async with bob.connect() as ws:
        for item in (kept, lost, lost_offline):
            await ws.subscribe(item)
        await alice.remove_member(lost, bob_name)
        got = await frames_until(ws, lambda f: f["type"] == "unsubscribed")
        [ended] = [f for f in got if f["type"] == "unsubscribed"]
        assert ended == {"type": "unsubscribed", "item_id": lost, "reason": "forbidden"}

        # Removed while the socket is down: the resubscription is refused, and said so.
        await proxy.pause()
        proxy.cut()
        await until(lambda: not ws.connected)
        await alice.remove_member(lost_offline, bob_name)
        await alice.post_message(kept, "while away")
        await proxy.resume()
        refusal = {"type": "unsubscribed", "item_id": lost_offline, "reason": "forbidden"}
        got: list[Frame] = []
        while refusal not in got or not any(map(message_of(kept, 1), got)):
            got += await frames_until(ws, lambda f: f == refusal or message_of(kept, 1)(f))
        assert ws.subscriptions == {kept: 1}
        assert await ws.publish(kept, "still here") == 2


async def test_the_item_channel_opts_in_to_state_and_changes_it(new_client: NewClient) -> None:
    alice = await new_client()
    item = (await alice.create_item("game", kind="tictactoe"))["id"]
    seen: list[Frame] = []
    async with alice.channel(item, state=True, on_state=seen.append) as channel:
        await until(lambda: channel.item_state is not None)
        assert channel.item_state is not None and channel.item_state["version"] == 0
        assert "sender" not in channel.item_state
        assert await channel.action({"move": 8}) == 1
        with pytest.raises(StateError) as illegal:
            await channel.action({"move": 8})
        assert illegal.value.code == "illegal"
        with pytest.raises(StateError) as wrong:
            await channel.patch([{"op": "add", "path": "/x", "value": 1}])
        assert wrong.value.code == "bad_request"
        await until(lambda: channel.item_state is not None and channel.item_state["version"] == 1)
        assert await channel.publish("a message too") == 1
    assert [(f["version"], f.get("sender")) for f in seen] == [(0, None), (1, await me(alice))]
    assert seen[-1]["state"]["board"][8] == "X"
