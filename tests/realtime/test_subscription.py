"""Subscriptions of a multiplexed socket on its one outbox: per item order, catch-up and
duplicates, frames held until the start, and what a revocation ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.realtime.subscription import Subscription


class Socket:
    def __init__(self, stored: dict[str, dict[int, str]]) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.stored = stored

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def fetch(self, item_id: str, after: int, upto: int) -> list[tuple[int, str]]:
        await asyncio.sleep(0)
        item = self.stored.get(item_id, {})
        return [(s, item[s]) for s in range(after + 1, upto + 1) if s in item]


class Owner:
    def __init__(self) -> None:
        self.lost_ones: list[Subscription] = []

    def lost(self, subscription: Subscription) -> None:
        subscription.end()
        self.lost_ones.append(subscription)


def message(item: str, seq: int) -> str:
    return json.dumps({"type": "message", "item_id": item, "seq": seq})


def setup(stored: dict[str, dict[int, str]], capacity: int = 100) -> tuple[Socket, Outbox]:
    socket = Socket(stored)
    outbox = Outbox(
        item_id="",
        user_id="u",
        username="alice",
        session_id="s",
        send=socket.send,
        close=socket.close,
        fetch=socket.fetch,
        capacity=capacity,
    )
    outbox.start(('{"type":"ready"}',))
    return socket, outbox


async def settled(outbox: Outbox) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await outbox.wait_sent()


def seqs(socket: Socket, item: str) -> list[int]:
    return [f["seq"] for f in socket.sent if f["type"] == "message" and f["item_id"] == item]


async def test_catch_up_follows_subscribed_and_precedes_live_frames() -> None:
    stored = {"a": {s: message("a", s) for s in range(1, 6)}}
    socket, outbox = setup(stored)
    sub = Subscription(outbox, "a", Owner())
    sub.push(4, message("a", 4))  # before the start: dropped, the catch-up has it
    sub.last_seq, sub.catch_up_to = 1, 5
    sub.start(('{"type":"subscribed","item_id":"a"}',))
    for seq in (4, 5, 6, 7):  # live, partly duplicates of the catch-up
        sub.push(seq, message("a", seq))
    await settled(outbox)
    assert [f["type"] for f in socket.sent[:2]] == ["ready", "subscribed"]
    assert seqs(socket, "a") == [2, 3, 4, 5, 6, 7]


async def test_items_are_deduplicated_each_on_its_own() -> None:
    socket, outbox = setup({})
    a, b = Subscription(outbox, "a", Owner()), Subscription(outbox, "b", Owner())
    for sub in (a, b):
        sub.start(())
    for seq in (1, 2, 2, 3):
        a.push(seq, message("a", seq))
        b.push(seq, message("b", seq))
    await settled(outbox)
    assert seqs(socket, "a") == [1, 2, 3]
    assert seqs(socket, "b") == [1, 2, 3]


async def test_unsequenced_frames_are_held_until_the_start_and_presence_names_the_item() -> None:
    socket, outbox = setup({})
    sub = Subscription(outbox, "a", Owner())
    state = '{"type":"state","item_id":"a","version":2}'
    sub.push(0, state)
    presence = protocol.encode(protocol.PresenceFrame(event="join", user="bob", count=2))
    sub.push(0, presence)
    await settled(outbox)
    assert [f["type"] for f in socket.sent] == ["ready"]
    sub.start(('{"type":"subscribed","item_id":"a"}', '{"type":"state","version":1}'))
    await settled(outbox)
    assert socket.sent[1:] == [
        {"type": "subscribed", "item_id": "a"},
        {"type": "state", "version": 1},
        {"type": "state", "item_id": "a", "version": 2},
        {"type": "presence", "item_id": "a", "event": "join", "user": "bob", "count": 2},
    ]


async def test_lost_access_ends_the_subscription_and_other_closes_close_the_socket() -> None:
    socket, outbox = setup({})
    owner = Owner()
    sub = Subscription(outbox, "a", owner)
    sub.start(())
    sub.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
    sub.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
    assert owner.lost_ones == [sub] and outbox.closing is None
    other = Subscription(outbox, "b", owner)
    other.request_close(protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE)
    await settled(outbox)
    assert socket.closed == (protocol.TRY_AGAIN_LATER, protocol.BROKER_UNAVAILABLE)


async def test_one_queue_overflows_for_all_items() -> None:
    socket, outbox = setup({}, capacity=4)
    a, b = Subscription(outbox, "a", Owner()), Subscription(outbox, "b", Owner())
    for sub in (a, b):
        sub.start(())
    for seq in (1, 2, 3):  # no event-loop turn in between: nothing is sent yet
        a.push(seq, message("a", seq))
        b.push(seq, message("b", seq))
    assert outbox.closing is not None
    await settled(outbox)
    assert socket.closed == (protocol.TRY_AGAIN_LATER, protocol.SLOW_CONSUMER)


async def test_an_ended_subscription_stops_its_catch_up() -> None:
    stored = {"a": {s: message("a", s) for s in range(1, 2001)}}
    socket, outbox = setup(stored)
    sub = Subscription(outbox, "a", Owner())
    sub.catch_up_to = 2000
    sub.start(())
    await asyncio.sleep(0)
    sub.end()
    await settled(outbox)
    assert len(seqs(socket, "a")) < 2000
