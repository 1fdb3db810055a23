"""`?batch=1`: pending frames sent together as one `batch` frame, in order, none lost."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support import Api, User, ready, ready_frame, recv

Frames = list[dict[str, Any]]


async def channel(
    api: Api, item: str, user: User, **query: str
) -> tuple[ClientConnection, dict[str, Any]]:
    return await ready(api.server, item, user.token, query=query)


async def read_frames(ws: ClientConnection, done: Any, timeout: float = 30.0) -> list[Frames]:
    """What each received frame carries (a batch unpacked), until `done(all so far)`."""
    received: list[Frames] = []
    flat: Frames = []
    while not done(flat):
        frame = await recv(ws, timeout)
        if frame["type"] == "batch":
            assert len(frame["frames"]) >= 2, frame
            assert all(f["type"] not in ("batch", "ready") for f in frame["frames"])
            received.append(frame["frames"])
        else:
            received.append([frame])
        flat.extend(received[-1])
    return received


def seqs(received: list[Frames]) -> list[int]:
    return [f["seq"] for frames in received for f in frames if f["type"] == "message"]


@pytest.mark.parametrize(("value", "on"), [("1", True), ("0", False), ("yes", False)])
async def test_ready_says_when_batching_is_on(api: Api, value: str, on: bool) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, hello = await channel(api, item, owner, batch=value)
    async with ws:
        expected = ready_frame(item, owner, "owner", 0)
        if on:
            expected["batch"] = True
        assert hello == expected


async def test_a_replay_comes_in_batches(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(1, 31):
        await api.post(owner, item, n)
    ws, hello = await channel(api, item, owner, since="4", batch="1")
    async with ws:
        assert hello["recovered"] is True and hello["batch"] is True
        received = await read_frames(ws, lambda flat: 30 in seqs([flat]))
        # Everything stored after `since` went out as one frame, ahead of the live ones.
        assert [f["seq"] for f in received[0]] == list(range(5, 31))
        assert [f["data"] for f in received[0]] == list(range(5, 31))
        assert seqs(received) == list(range(5, 31))


async def test_pipelined_publishes_are_answered_in_batches_in_order(api: Api) -> None:
    owner = await api.user()
    watcher = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, watcher, "reader")
    plain, _ = await channel(api, item, watcher)
    ws, _ = await channel(api, item, owner, batch="1")
    count = 300
    async with ws, plain:
        # Back to back, without waiting: stored by group commits, answered together.
        for n in range(1, count + 1):
            await ws.send(json.dumps({"type": "publish", "data": n, "ref": f"r{n}"}))

        def all_answered(flat: Frames) -> bool:
            acks = [f for f in flat if f["type"] == "ack"]
            return len(acks) == count and count in seqs([flat])

        received = await read_frames(ws, all_answered)
        flat = [f for frames in received for f in frames]
        acks = [f for f in flat if f["type"] == "ack"]
        assert [a["ref"] for a in acks] == [f"r{n}" for n in range(1, count + 1)]
        assert [a["seq"] for a in acks] == list(range(1, count + 1))
        assert seqs(received) == list(range(1, count + 1))
        assert [f["data"] for f in flat if f["type"] == "message"] == list(range(1, count + 1))
        # Fewer frames than answers: they were batched.
        assert len(received) < len(flat)

        # A socket that did not ask for batches never gets one.
        plain_received = await read_frames(plain, lambda flat: count in seqs([flat]))
        assert all(len(frames) == 1 for frames in plain_received)
        assert seqs(plain_received) == list(range(1, count + 1))
