"""Many publishes in flight on one socket of the default `websockets` client.

The client keeps at most 16 received frames before it stops reading its socket, and
every publish brings two (the ack and the message). With more publishes unacknowledged
than that queue holds answers, the socket must keep its pace: a few thousand messages
go through in seconds, where a read/write stall (each publish waiting hundreds of
milliseconds) would need minutes.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support import Api, open_channel, recv

TOTAL = 2000
DEADLINE = 60.0  # seconds for TOTAL publishes: ~100x what they take


@pytest.mark.parametrize("window", [64, 256])
async def test_a_deep_window_on_one_socket_does_not_stall(api: Api, window: int) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws = await open_channel(api.server, item, owner.token)  # the client's defaults
    assert (await recv(ws))["type"] == "ready"
    room = asyncio.Semaphore(window)
    acks: list[int] = []
    messages: list[int] = []
    others: list[str] = []
    done = asyncio.Event()

    async def read() -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "ack":
                acks.append(frame["seq"])
                room.release()
            elif frame["type"] == "message":
                messages.append(frame["seq"])
            else:
                others.append(frame["type"])
            if len(acks) == len(messages) == TOTAL:
                done.set()
                return

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(DEADLINE):
            for i in range(TOTAL):
                await room.acquire()
                await ws.send(json.dumps({"type": "publish", "data": i, "ref": str(i)}))
            await asyncio.wait(
                [reader, asyncio.ensure_future(done.wait())], return_when="FIRST_COMPLETED"
            )
        if reader.done():
            reader.result()  # its error, if it failed
    finally:
        reader.cancel()
        await ws.close()
    assert acks == messages == list(range(1, TOTAL + 1))
    assert set(others) <= {"presence"}
