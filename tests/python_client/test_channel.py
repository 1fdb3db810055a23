"""`Client.channel()` against a real server: publish, iterate, pipelining, presence, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.client import Message, PublishError
from tests.python_client.conftest import NewClient, me
from tests.servers import LiveServer


async def take(channel: Any, n: int) -> list[Message]:
    """The next `n` messages of a channel, in one `async for`."""
    got: list[Message] = []
    async with asyncio.timeout(20):
        async for message in channel:
            got.append(message)
            if len(got) == n:
                break
    return got


async def test_publish_returns_the_acked_seq_and_the_message_comes_back(
    new_client: NewClient,
) -> None:
    alice = await new_client()
    item = await alice.create_item("launch")
    async with alice.channel(item["id"]) as channel:
        assert channel.ready is not None and channel.ready["role"] == "owner"
        seq = await channel.publish({"text": "hi"})
        assert seq == 1
        [message] = await take(channel, 1)
    assert message == {
        "item_id": item["id"],
        "seq": 1,
        "sender": await me(alice),
        "data": {"text": "hi"},
        "ts": message["ts"],
    }
    assert message["ts"].endswith("Z")
    assert await alice.messages(item["id"]) == [message]


async def test_separate_loops_continue_where_the_previous_one_stopped(
    new_client: NewClient,
) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    for n in range(3):
        await alice.post_message(item, n)
    async with alice.channel(item, since=0) as channel:
        first = await take(channel, 2)
        for n in range(3, 6):
            await channel.publish(n)
        second = await take(channel, 4)
    assert [m["seq"] for m in first + second] == [1, 2, 3, 4, 5, 6]
    assert [m["data"] for m in first + second] == [0, 1, 2, 3, 4, 5]


async def test_without_since_only_later_messages_come(new_client: NewClient) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    await alice.post_message(item, "old")
    async with alice.channel(item) as channel:
        assert channel.last_seq == 1
        await alice.post_message(item, "new")
        [message] = await take(channel, 1)
    assert (message["seq"], message["data"]) == (2, "new")


async def test_pipelined_publishes_each_get_their_own_ack(new_client: NewClient) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    async with alice.channel(item) as channel:
        seqs = await asyncio.gather(*(channel.publish({"n": n}) for n in range(200)))
        messages = await take(channel, 200)
    assert sorted(seqs) == list(range(1, 201))
    # Each publish resolved to the seq its own data was stored under.
    by_seq = {m["seq"]: m["data"] for m in messages}
    assert [by_seq[seq] for seq in seqs] == [{"n": n} for n in range(200)]
    assert [m["seq"] for m in messages] == list(range(1, 201))


async def test_a_reader_publishing_gets_publish_error_forbidden(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("x"))["id"]
    await alice.add_member(item, await me(bob), "reader")
    async with bob.channel(item) as channel:
        assert channel.ready is not None and channel.ready["role"] == "reader"
        with pytest.raises(PublishError) as refused:
            await channel.publish("no")
        assert refused.value.code == "forbidden"
        # The socket stays open and usable.
        await alice.post_message(item, "yes")
        [message] = await take(channel, 1)
    assert message["data"] == "yes"
    assert await alice.messages(item) == [message]


async def test_rate_limited_publishes_raise_publish_error(make_server: Any) -> None:
    from api.client import Client
    from tests.python_client.conftest import FAST
    from tests.support import PASSWORD, unique

    server: LiveServer
    with make_server(ws_publish_rate=1, ws_publish_burst=2) as server:
        async with Client(server.base_url, backoff=FAST) as alice:
            name = unique()
            await alice.register(name, PASSWORD)
            await alice.login(name, PASSWORD)
            item = (await alice.create_item("x"))["id"]
            async with alice.channel(item) as channel:
                results = await asyncio.gather(
                    *(channel.publish(n) for n in range(6)), return_exceptions=True
                )
            stored = await alice.messages(item)
    codes = {r.code for r in results if isinstance(r, PublishError)}
    acked = [r for r in results if isinstance(r, int)]
    assert codes == {"rate_limited"}
    assert sorted(acked) == [m["seq"] for m in stored]


async def test_presence_frames_reach_the_callback(new_client: NewClient) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("x"))["id"]
    await alice.add_member(item, await me(bob), "writer")
    seen: list[dict[str, Any]] = []
    joined = asyncio.Event()

    def on_presence(frame: dict[str, Any]) -> None:
        seen.append(frame)
        if frame["user"] == bob_name and frame["event"] == "join":
            joined.set()

    bob_name = await me(bob)
    async with alice.channel(item, on_presence=on_presence) as channel:
        async with bob.channel(item):
            await asyncio.wait_for(joined.wait(), 10)
        assert channel.presence is not None
    alice_name = await me(alice)
    assert seen[0] == {"type": "presence", "event": "join", "user": alice_name, "count": 1}
    assert {"type": "presence", "event": "join", "user": bob_name, "count": 2} in seen


async def test_publish_times_out_as_publish_error(new_client: NewClient) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    async with alice.channel(item) as channel:
        with pytest.raises(PublishError) as late:
            await channel.publish("x", timeout=0)
    assert late.value.code == "timeout"


async def test_a_channel_used_before_it_is_opened_says_so(new_client: NewClient) -> None:
    alice = await new_client()
    channel = alice.channel("never-opened")
    with pytest.raises(RuntimeError, match="async with"):
        await channel.publish("x")
    with pytest.raises(RuntimeError, match="async with"):
        await channel.__anext__()
