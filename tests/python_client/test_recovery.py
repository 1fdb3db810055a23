"""`recovered: false` as its own exception, and malformed server frames as ProtocolError."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve

from api.client import Client, Message, NotRecovered, ProtocolError
from tests.python_client.conftest import FAST
from tests.servers import LiveServer
from tests.support import PASSWORD, unique


async def test_pruned_history_raises_not_recovered_then_continues(
    make_server: Callable[..., AbstractContextManager[LiveServer]],
) -> None:
    with make_server(message_retention=3) as server:
        async with Client(server.base_url, backoff=FAST) as alice:
            name = unique()
            await alice.register(name, PASSWORD)
            await alice.login(name, PASSWORD)
            item = (await alice.create_item("x"))["id"]
            for n in range(1, 11):
                await alice.post_message(item, n)
            async with alice.channel(item, since=2) as channel:
                with pytest.raises(NotRecovered) as gap:
                    await channel.__anext__()
                got: list[Message] = []
                async with asyncio.timeout(20):
                    async for message in channel:
                        got.append(message)
                        if message["seq"] == 10:
                            break
    assert (gap.value.since, gap.value.last_seq) == (2, 10)
    assert [m["seq"] for m in got] == [8, 9, 10]


@asynccontextmanager
async def _fake(frames: list[str]) -> AsyncIterator[str]:
    """A WebSocket server that sends `frames` to whoever connects, then waits."""

    async def handler(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}"


READY = json.dumps(
    {
        "type": "ready",
        "item_id": "i",
        "user": {"id": "1", "username": "u"},
        "role": "owner",
        "last_seq": 0,
    }
)


@pytest.mark.parametrize(
    ("frames", "named"),
    [
        (["not json"], "not JSON"),
        ([json.dumps({"type": "message", "seq": 1})], "expected a 'ready' frame"),
        ([json.dumps({"type": "ready", "last_seq": "0"})], "last_seq"),
        ([READY, json.dumps({"type": "message", "item_id": "i", "seq": 1})], "sender"),
        (
            [
                READY,
                json.dumps(
                    {
                        "type": "message",
                        "item_id": "i",
                        "seq": "1",
                        "sender": "u",
                        "data": 1,
                        "ts": "t",
                    }
                ),
            ],
            "seq",
        ),
        ([READY, json.dumps([1, 2])], "without a type"),
        ([READY, json.dumps({"type": "batch", "frames": [{"type": "ready"}]})], "ready"),
    ],
)
async def test_a_malformed_frame_raises_a_protocol_error_naming_it(
    frames: list[str], named: str
) -> None:
    async with _fake(frames) as url, Client(url, token="t", backoff=FAST) as client:
        with pytest.raises(ProtocolError, match=named):
            async with asyncio.timeout(10), client.channel("i") as channel:
                async for _ in channel:
                    pass


def message(seq: int) -> str:
    frame = {"type": "message", "item_id": "i", "seq": seq, "sender": "u", "data": seq}
    return json.dumps({**frame, "ts": "2025-01-31T09:15:03Z"})


async def test_duplicates_are_dropped_and_a_gap_resumes_from_the_last_seq() -> None:
    """Against a server that misbehaves: a repeated message, then one skipped."""
    asked: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        asked.append(ws.request.path)
        if len(asked) == 1:
            frames = [READY, message(1), message(1), message(3)]
        else:
            frames = [READY.replace('"last_seq": 0', '"last_seq": 3'), message(2), message(3)]
        for frame in frames:
            await ws.send(frame)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with Client(f"http://127.0.0.1:{port}", token="t", backoff=FAST) as client:
            got: list[int] = []
            async with asyncio.timeout(10), client.channel("i", since=0) as channel:
                async for each in channel:
                    got.append(each["seq"])
                    if len(got) == 3:
                        break
    assert got == [1, 2, 3]
    assert asked == ["/items/i/ws?batch=1&since=0", "/items/i/ws?batch=1&since=1"]
