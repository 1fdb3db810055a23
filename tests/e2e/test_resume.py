"""Resume with `?since=N`: replay, then live, in seq order with no gap and no duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from api.db import make_engine, make_session_factory
from api.items import messages
from tests.servers import LiveServer
from tests.support import (
    Api,
    User,
    history,
    message_frame,
    messages_through,
    next_messages,
    of_type,
    ping_barrier,
    ready,
    ready_frame,
    started,
)

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


async def resume(
    api: Api, item_id: str, user: User, since: int | str
) -> tuple[ClientConnection, dict[str, Any]]:
    return await ready(api.server, item_id, user.token, query={"since": str(since)})


async def test_since_replays_later_messages_then_live(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(1, 6):
        await api.post(owner, item, {"n": n})
    ws, hello = await resume(api, item, owner, 2)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 5, recovered=True)
        replayed = await messages_through(ws, 5)
        assert replayed == [message_frame(item, n, owner.username, {"n": n}) for n in (3, 4, 5)]
        # The replayed frames are the stored messages.
        stored = await history(api, owner, item, after=2)
        assert replayed == [{"type": "message", **m} for m in stored]
        await api.post(owner, item, {"n": 6})
        await api.post(owner, item, {"n": 7})
        live = await messages_through(ws, 7)
        assert live == [message_frame(item, n, owner.username, {"n": n}) for n in (6, 7)]


async def test_since_zero_on_a_fresh_item(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, hello = await resume(api, item, owner, 0)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 0, recovered=True)
        assert of_type(await ping_barrier(ws), "message") == []
        await api.post(owner, item, "first")
        assert await messages_through(ws, 1) == [message_frame(item, 1, owner.username, "first")]


async def test_since_zero_replays_everything(api: Api) -> None:
    owner = await api.user()
    reader = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, reader, "reader")
    for n in range(1, 4):
        await api.post(owner, item, n)
    ws, hello = await resume(api, item, reader, 0)
    async with ws:
        assert hello == ready_frame(item, reader, "reader", 3, recovered=True)
        assert await messages_through(ws, 3) == [
            message_frame(item, n, owner.username, n) for n in (1, 2, 3)
        ]


async def test_since_equal_to_last_seq_replays_nothing(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(1, 4):
        await api.post(owner, item, n)
    ws, hello = await resume(api, item, owner, 3)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 3, recovered=True)
        assert of_type(await ping_barrier(ws), "message") == []
        await api.post(owner, item, 4)
        assert await messages_through(ws, 4) == [message_frame(item, 4, owner.username, 4)]


@pytest.mark.parametrize("since", ["4", "1000", "99999999999999999999999999"])
async def test_since_above_last_seq_is_not_recovered(api: Api, since: str) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(1, 4):
        await api.post(owner, item, n)
    ws, hello = await resume(api, item, owner, since)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 3, recovered=False)
        assert of_type(await ping_barrier(ws), "message") == []


async def test_leading_zeros_are_a_valid_since(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(1, 4):
        await api.post(owner, item, n)
    ws, hello = await resume(api, item, owner, "002")
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 3, recovered=True)
        assert [f["seq"] for f in await messages_through(ws, 3)] == [3]


async def test_resume_after_a_disconnect_loses_nothing(api: Api) -> None:
    """The client's channel: read, close, miss some messages, resume from its last seq."""
    owner = await api.user()
    item = await api.item(owner)
    async with api.client(owner) as client:
        async with client.channel(item, since=0) as channel:
            for n in range(1, 4):
                await api.post(owner, item, n)
            assert [m["data"] for m in await next_messages(channel, 3)] == [1, 2, 3]
        for n in range(4, 9):
            await api.post(owner, item, n)
        async with client.channel(item, since=channel.last_seq) as resumed:
            hello = ready_frame(item, owner, "owner", 8, recovered=True)
            assert resumed.ready == {**hello, "batch": True}
            stored = await next_messages(resumed, 5)
            assert stored == await api.history(owner, item, after=3)


# The race: sockets resuming while others publish, over REST and the channel.


async def _rest_publisher(
    api: Api, user: User, item: str, stop: asyncio.Event, acked: list[int]
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        acked.append((await api.post(user, item, {"rest": user.username, "n": n}))["seq"])


async def _channel_publisher(
    api: Api, user: User, item: str, stop: asyncio.Event, acked: list[int]
) -> None:
    """Publishes through the client's channel, 4 publishes in flight (matched to their
    acks by ref), until `stop`."""
    async with api.client(user) as client, client.channel(item) as channel:

        async def lane(name: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                acked.append(await channel.publish({"ws": user.username, "lane": name, "n": n}))

        await asyncio.gather(*(lane(name) for name in range(4)))


class Stream:
    """Publishers over REST and the channel, running until `stop()`."""

    def __init__(self, api: Api, item: str, rest: list[User], ws: list[User]) -> None:
        self.stop_event = asyncio.Event()
        self.acked: list[int] = []
        args = (item, self.stop_event, self.acked)
        self.tasks = [
            *(asyncio.create_task(_rest_publisher(api, u, *args)) for u in rest),
            *(asyncio.create_task(_channel_publisher(api, u, *args)) for u in ws),
        ]

    async def reach(self, count: int) -> int:
        """Wait until `count` publishes are acknowledged; how many are."""
        while len(self.acked) < count:
            for task in self.tasks:
                if task.done():
                    task.result()
                    raise AssertionError("a publisher stopped early")
            await asyncio.sleep(0.005)
        return len(self.acked)

    async def stop(self) -> int:
        """Stop publishing; the last seq, after checking the acks have no gap."""
        self.stop_event.set()
        await asyncio.gather(*self.tasks)
        end = max(self.acked)
        assert sorted(self.acked) == list(range(1, end + 1))
        return end

    async def cancel(self) -> None:
        self.stop_event.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_resume_while_others_publish(api: Api) -> None:
    owner = await api.user()
    writers = [await api.user() for _ in range(3)]
    item = await api.item(owner)
    for w in writers:
        await api.share(owner, item, w, "writer")
    stream = Stream(api, item, rest=[owner, writers[0]], ws=[writers[1], writers[2]])
    observers: list[tuple[ClientConnection, dict[str, Any], int]] = []
    try:
        await stream.reach(10)
        ws, hello = await resume(api, item, owner, 0)
        observers.append((ws, hello, 0))
        k = await stream.reach(hello["last_seq"] + 30) // 2
        ws, hello = await resume(api, item, writers[0], k)
        observers.append((ws, hello, k))
        await stream.reach(hello["last_seq"] + 30)
        end = await stream.stop()
        for ws, hello, since in observers:
            # Each one joined mid-stream...
            assert hello["recovered"] is True
            assert since < hello["last_seq"] < end
            # ...and sees every seq after `since` exactly once, in order.
            seqs = [f["seq"] for f in await messages_through(ws, end, timeout=60)]
            assert seqs == list(range(since + 1, end + 1))
        stored = await history(api, owner, item)
        assert [m["seq"] for m in stored] == list(range(1, end + 1))
    finally:
        await stream.cancel()
        for ws, _, _ in observers:
            await ws.close()


async def test_many_resumes_during_a_stream(api: Api) -> None:
    """Sockets resuming one after another from varied points all see a complete stream."""
    owner = await api.user()
    writer = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, writer, "writer")
    stream = Stream(api, item, rest=[owner], ws=[writer])
    observers: list[tuple[ClientConnection, int]] = []
    try:
        for round_ in range(8):
            published = await stream.reach(8 * (round_ + 1))
            since = (0, published // 2, published - 1, published)[round_ % 4]
            ws, hello = await resume(api, item, owner if round_ % 2 else writer, since)
            observers.append((ws, since))
            assert hello["recovered"] is True
            assert hello["last_seq"] >= since
        end = await stream.stop()
        for ws, since in observers:
            seqs = [f["seq"] for f in await messages_through(ws, end, timeout=60)]
            assert seqs == list(range(since + 1, end + 1))
    finally:
        await stream.cancel()
        for ws, _ in observers:
            await ws.close()


async def test_since_at_a_stored_seq_not_yet_delivered_is_recovered(
    make_server: MakeServer,
) -> None:
    """A client holding an ack may resume before the broker brought that message here.

    The message is stored behind the service's back, so no broker carries it and (with
    the gap check slowed down) this process has not seen it when the client resumes.
    """
    async with started(make_server, gap_check_interval=600) as api:
        owner = await api.user()
        item = await api.item(owner)
        watcher, _ = await resume(api, item, owner, 0)  # the item is live here; access cached
        engine = make_engine(api.server.settings.database_url)
        try:
            async with make_session_factory(engine)() as db:
                await messages.store(db, item, owner.id, owner.username, '"acked"')
        finally:
            await engine.dispose()
        ws, hello = await resume(api, item, owner, 1)
        async with watcher, ws:
            assert hello == ready_frame(item, owner, "owner", 1, recovered=True)
            await api.post(owner, item, "next")
            assert [f["seq"] for f in await messages_through(ws, 2)] == [2]


# Retention.


async def test_retention_prunes_and_resume_is_not_recovered(make_server: MakeServer) -> None:
    async with started(make_server, message_retention=5) as api:
        owner = await api.user()
        item = await api.item(owner)
        for n in range(1, 21):
            await api.post(owner, item, n)
        assert [m["seq"] for m in await history(api, owner, item)] == [16, 17, 18, 19, 20]

        ws, hello = await resume(api, item, owner, 3)
        async with ws:
            assert hello == ready_frame(item, owner, "owner", 20, recovered=False)
            assert await messages_through(ws, 20) == [
                message_frame(item, n, owner.username, n) for n in range(16, 21)
            ]
            await api.post(owner, item, 21)
            assert [f["seq"] for f in await messages_through(ws, 21)] == [21]

        # Now seqs 17..21 are kept: since=16 misses nothing, since=15 misses seq 16.
        ws, hello = await resume(api, item, owner, 16)
        async with ws:
            assert hello == ready_frame(item, owner, "owner", 21, recovered=True)
            assert [f["seq"] for f in await messages_through(ws, 21)] == [17, 18, 19, 20, 21]
        ws, hello = await resume(api, item, owner, 15)
        async with ws:
            assert hello == ready_frame(item, owner, "owner", 21, recovered=False)
            assert [f["seq"] for f in await messages_through(ws, 21)] == [17, 18, 19, 20, 21]
        ws, hello = await resume(api, item, owner, 19)
        async with ws:
            assert hello == ready_frame(item, owner, "owner", 21, recovered=True)
            assert [f["seq"] for f in await messages_through(ws, 21)] == [20, 21]
