"""The hub on its own, with the in-memory broker and presence and a store in a dict."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

from api.realtime import protocol
from api.realtime.envelope import envelope, item_channel
from api.realtime.hub import Hub
from api.realtime.memory import MemoryBroker, QueueSubscription
from api.realtime.outbox import Outbox
from api.realtime.presence import MemoryPresence


class DictStore:
    def __init__(self) -> None:
        self.messages: dict[str, dict[int, str]] = {}

    def add(self, item_id: str, seq: int) -> str:
        frame = json.dumps({"type": "message", "item_id": item_id, "seq": seq})
        self.messages.setdefault(item_id, {})[seq] = frame
        return frame

    async def fetch(self, item_id: str, after: int, upto: int) -> list[tuple[int, str]]:
        await asyncio.sleep(0)
        stored = self.messages.get(item_id, {})
        return [(s, stored[s]) for s in range(after + 1, upto + 1) if s in stored]

    async def latest(self, item_ids: Collection[str]) -> dict[str, int]:
        return {i: max(self.messages.get(i, {0: ""})) for i in item_ids}


class FlakyBroker(MemoryBroker):
    """Item subscriptions fail while `failing` is set."""

    failing = False

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[QueueSubscription]:
        if self.failing and channel.startswith("item:"):
            raise ConnectionError("broker down")
        async with super().subscribe(channel) as sub:
            yield sub


class Socket:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] == "message"]


@asynccontextmanager
async def running_hub(broker: MemoryBroker, store: DictStore) -> AsyncIterator[Hub]:
    hub = Hub(broker, MemoryPresence(), store, poll_interval=3600)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def attached(hub: Hub, store: DictStore, item_id: str, capacity: int = 1024) -> Socket:
    socket = Socket()
    outbox = Outbox(
        item_id=item_id,
        user_id="u",
        username="alice",
        session_id="s",
        send=socket.send,
        close=socket.close,
        fetch=store.fetch,
        capacity=capacity,
    )
    outbox.on_close = hub.detach
    await hub.attach(outbox, hub.control.epoch)
    outbox.last_seq = outbox.catch_up_to = hub.last_seq(item_id)
    outbox.start()
    return socket


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_failed_subscription_is_replaced_for_the_next_socket() -> None:
    broker = FlakyBroker()
    store = DictStore()
    async with running_hub(broker, store) as hub:
        broker.failing = True
        first = await attached(hub, store, "a")
        await until(lambda: first.closed is not None)
        assert first.closed == (protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE)

        broker.failing = False
        second = await attached(hub, store, "a")
        await broker.publish(item_channel("a"), envelope(1, store.add("a", 1)))
        await until(lambda: second.seqs() == [1])
        assert second.closed is None


async def test_a_long_gap_is_filled_without_overflowing_the_queues() -> None:
    broker = MemoryBroker()
    store = DictStore()
    async with running_hub(broker, store) as hub:
        sockets = [await attached(hub, store, "b", capacity=600) for _ in range(3)]
        for seq in range(1, 2001):
            store.add("b", seq)
        # Only the last one comes through the broker: 1,999 are read from the store.
        await broker.publish(item_channel("b"), envelope(2001, store.add("b", 2001)))
        await until(lambda: all(s.seqs()[-1:] == [2001] for s in sockets))
        for socket in sockets:
            assert socket.closed is None
            assert socket.seqs() == list(range(1, 2002))


async def test_a_stored_group_over_several_items_reaches_each_items_sockets_in_order() -> None:
    broker = MemoryBroker()
    store = DictStore()
    async with running_hub(broker, store) as hub:
        on_a = [await attached(hub, store, "a") for _ in range(2)]
        on_b = await attached(hub, store, "b")
        group = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
        await hub.publish_messages([(item, seq, store.add(item, seq)) for item, seq in group])
        await until(lambda: all(s.seqs() == [1, 2, 3] for s in on_a) and on_b.seqs() == [1, 2])
        await asyncio.sleep(0.05)  # and nothing more arrives
        assert [s.seqs() for s in on_a] == [[1, 2, 3], [1, 2, 3]]
        assert on_b.seqs() == [1, 2]
