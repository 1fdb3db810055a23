"""Fan-out: many sockets on one item, and sockets that stop reading."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.servers import LiveServer
from tests.support import (
    TIMEOUT,
    Api,
    User,
    channel_url,
    history,
    messages_through,
    read_until,
    ready,
    ready_frame,
    started,
)

MakeServer = Callable[..., AbstractContextManager[LiveServer]]
BIG = 60_000  # characters of payload per large message


async def open_many(
    api: Api, item: str, tokens: list[str], **kwargs: Any
) -> list[ClientConnection]:
    """Open sockets concurrently; all or none (those opened are closed on failure)."""
    results = await asyncio.gather(
        *(ready(api.server, item, token, compression=None, **kwargs) for token in tokens),
        return_exceptions=True,
    )
    opened = [r[0] for r in results if isinstance(r, tuple)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await close_all(opened)
        raise failures[0]
    return opened


async def close_all(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def overflows(api: Api) -> float:
    """Sockets closed so far for a full outgoing queue (the server's metric)."""
    r = await api.http.get("/metrics")
    for line in r.text.splitlines():
        if line.startswith("item_channels_queue_overflows_total "):
            return float(line.split()[1])
    return 0.0


async def drain_after_overflow(
    api: Api, stuck: ClientConnection, before: float
) -> tuple[list[dict[str, Any]], int | None, str | None]:
    """Once a queue has overflowed, read the stuck socket to its close: its frames, and
    the close code and reason."""
    async with asyncio.timeout(60):
        while await overflows(api) <= before:
            await asyncio.sleep(0.05)
    seen: list[dict[str, Any]] = []
    try:
        while True:
            seen.append(json.loads(await asyncio.wait_for(stuck.recv(), TIMEOUT)))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return seen, exc.rcvd.code, exc.rcvd.reason


async def stuck_socket(server: LiveServer, item: str, token: str) -> ClientConnection:
    """A socket that stops reading at once: a tiny kernel receive buffer, `max_queue=1`.

    Never `recv` on it until the test wants it to catch up.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port)), TIMEOUT
        )
        return await connect(
            channel_url(server, item, token=token),
            sock=sock,
            max_queue=1,
            compression=None,
            open_timeout=TIMEOUT,
        )
    except BaseException:
        sock.close()
        raise


async def rest_publisher(api: Api, user: User, item: str, payloads: list[Any]) -> list[int]:
    return [(await api.post(user, item, data))["seq"] for data in payloads]


async def ws_publisher(api: Api, user: User, item: str, payloads: list[Any]) -> list[int]:
    """Publish one after another, each after the previous ack."""
    seqs = []
    ws, _ = await ready(api.server, item, user.token, compression=None)
    async with ws:
        for n, data in enumerate(payloads):
            await ws.send(json.dumps({"type": "publish", "data": data, "ref": str(n)}))
            frames = await read_until(ws, lambda f: f["type"] in ("ack", "error"))
            assert frames[-1] == {"type": "ack", "ref": str(n), "seq": frames[-1]["seq"]}
            seqs.append(frames[-1]["seq"])
    return seqs


async def cancel(future: asyncio.Future[Any] | None) -> None:
    """Stop a reading task left behind by a failure (and retrieve its outcome)."""
    if future is not None and not future.done():
        future.cancel()
    if future is not None:
        await asyncio.gather(future, return_exceptions=True)


def split(payloads: list[Any], parts: int) -> list[list[Any]]:
    return [payloads[i::parts] for i in range(parts)]


async def test_200_sockets_get_every_message_in_order(api: Api) -> None:
    owner = await api.user()
    writers = [await api.user() for _ in range(2)]
    item = await api.item(owner)
    for w in writers:
        await api.share(owner, item, w, "writer")
    tokens = [(owner, *writers)[n % 3].token for n in range(200)]
    sockets = await open_many(api, item, tokens)
    reading: asyncio.Future[list[list[dict[str, Any]]]] | None = None
    try:
        assert len(sockets) == 200
        payloads = [{"n": n, "pad": "p" * (n % 50)} for n in range(100)]
        a, b, c = split(payloads, 3)
        reading = asyncio.gather(*(messages_through(ws, 100, 60) for ws in sockets))
        results = await asyncio.gather(
            rest_publisher(api, owner, item, a),
            rest_publisher(api, writers[0], item, b),
            ws_publisher(api, writers[1], item, c),
        )
        assert sorted(s for r in results for s in r) == list(range(1, 101))
        stored = [{"type": "message", **m} for m in await history(api, owner, item)]
        assert len(stored) == 100
        for frames in await reading:
            assert frames == stored
    finally:
        await cancel(reading)
        await close_all(sockets)


async def test_a_socket_that_never_reads_delays_no_one(api: Api) -> None:
    owner = await api.user()
    writer = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, writer, "writer")
    stuck = await stuck_socket(api.server, item, owner.token)
    readers: list[ClientConnection] = []
    reading: asyncio.Future[list[list[dict[str, Any]]]] | None = None
    try:
        readers = await open_many(api, item, [writer.token] * 10)
        payloads = [{"n": n, "blob": "b" * BIG} for n in range(100)]
        # Every reader gets everything while the stuck one reads nothing.
        reading = asyncio.gather(*(messages_through(ws, 100, 60) for ws in readers))
        await asyncio.gather(*(rest_publisher(api, owner, item, p) for p in split(payloads, 2)))
        received = await reading
        for frames in received:
            assert [f["seq"] for f in frames] == list(range(1, 101))
        assert sorted(f["data"]["n"] for f in received[0]) == list(range(100))
        # The stuck socket was not dropped (its queue never filled): it catches up.
        hello = json.loads(await asyncio.wait_for(stuck.recv(), TIMEOUT))
        assert hello == ready_frame(item, owner, "owner", 0)
        frames = await messages_through(stuck, 100, 60)
        assert [f["seq"] for f in frames] == list(range(1, 101))
    finally:
        await cancel(reading)
        await close_all([stuck, *readers])


async def test_slow_consumer_is_closed_and_resumes(make_server: MakeServer) -> None:
    count = 200
    async with started(make_server, ws_queue_size=16, max_message_bytes=128 * 1024) as api:
        owner = await api.user()
        item = await api.item(owner)
        stuck = await stuck_socket(api.server, item, owner.token)
        reader: ClientConnection | None = None
        reading: asyncio.Future[list[dict[str, Any]]] | None = None
        draining: asyncio.Future[Any] | None = None
        try:
            reader, _ = await ready(api.server, item, owner.token, compression=None)
            payloads = [{"n": n, "blob": "b" * BIG} for n in range(count)]
            reading = asyncio.create_task(messages_through(reader, count, 60))
            before = await overflows(api)
            # The stuck socket reads once its queue has overflowed, while the others go on:
            # what was sent before the close, then 1013. (Were it to wait much longer, the
            # server would rightly let go of a peer that cannot take its close frame.)
            draining = asyncio.create_task(drain_after_overflow(api, stuck, before))
            await asyncio.gather(*(rest_publisher(api, owner, item, p) for p in split(payloads, 2)))
            frames = await reading
            assert [f["seq"] for f in frames] == list(range(1, count + 1))
            seen, code, reason = await draining
            assert (code, reason) == (1013, "slow consumer")
            assert seen[0]["type"] == "ready"
            seqs = [f["seq"] for f in seen if f["type"] == "message"]
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) < count
        finally:
            await cancel(reading)
            await cancel(draining)
            await close_all([s for s in (stuck, reader) if s is not None])

        # It resumes from the last seq it got, and loses nothing.
        last = len(seqs)
        ws, hello = await ready(
            api.server, item, owner.token, query={"since": str(last)}, compression=None
        )
        async with ws:
            assert hello == ready_frame(item, owner, "owner", count, recovered=True)
            frames = await messages_through(ws, count, 60)
            assert [f["seq"] for f in frames] == list(range(last + 1, count + 1))
