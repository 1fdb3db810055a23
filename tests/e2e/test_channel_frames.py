"""Frames on an open channel: ready, publish/ack/message, errors, ping, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.servers import LiveServer
from tests.support import (
    Api,
    closed,
    error_frame,
    history,
    message_frame,
    messages_through,
    of_type,
    ping_barrier,
    publish,
    read_until,
    ready,
    ready_frame,
    recv,
    started,
    without,
)

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


# Ready.


async def test_ready_frame_of_the_owner(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, hello = await ready(api.server, item, owner.token)
    async with ws:
        assert hello == {
            "type": "ready",
            "item_id": item,
            "user": {"id": owner.id, "username": owner.username},
            "role": "owner",
            "last_seq": 0,
        }
        assert "recovered" not in hello


@pytest.mark.parametrize("role", ["writer", "reader"])
async def test_ready_frame_of_a_member(api: Api, role: str) -> None:
    owner = await api.user()
    member = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, role)
    for n in range(3):
        await api.post(owner, item, {"n": n})
    ws, hello = await ready(api.server, item, member.token)
    async with ws:
        assert hello == ready_frame(item, member, role, 3)


async def test_ready_is_the_first_frame_and_the_join_follows(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, hello = await ready(api.server, item, owner.token)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 0)
        assert await recv(ws) == {
            "type": "presence",
            "event": "join",
            "user": owner.username,
            "count": 1,
        }


# Publish, ack, message.


async def test_publish_is_acked_and_delivered_to_every_socket(api: Api) -> None:
    owner = await api.user()
    writer = await api.user()
    reader = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, writer, "writer")
    await api.share(owner, item, reader, "reader")
    sender, _ = await ready(api.server, item, writer.token)
    others = [
        (await ready(api.server, item, owner.token))[0],
        (await ready(api.server, item, reader.token))[0],
        (await ready(api.server, item, writer.token))[0],  # the sender's second socket
    ]
    try:
        data = {"text": "hello", "list": [1, 2.5, None, True], "nested": {"é": "ü"}}
        await publish(sender, data, ref="r-1")
        expected = message_frame(item, 1, writer.username, data)
        frames = await read_until(sender, lambda f: f["type"] == "message")
        if not of_type(frames, "ack"):
            frames += await read_until(sender, lambda f: f["type"] == "ack")
        assert of_type(frames, "ack") == [{"type": "ack", "ref": "r-1", "seq": 1}]
        assert of_type(frames, "message") == [expected]
        for ws in others:
            frames = await read_until(ws, lambda f: f["type"] == "message")
            assert without(frames, "presence") == [expected]
        # The frame carries the stored message object.
        stored = await history(api, owner, item)
        assert [{"type": "message", **m} for m in stored] == [frames[-1]]
    finally:
        for ws in [sender, *others]:
            await ws.close()


async def test_ack_without_ref_and_with_every_json_value(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    values: list[Any] = [None, 0, -1.5, "text", [], {}, [1, "a", {"b": None}], True, False]
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        for value in values:
            await publish(ws, value)
        frames = await read_until(
            ws,
            lambda f: f["type"] == "message" and f["seq"] == len(values),
        )
        acks = of_type(frames, "ack")
        while len(acks) < len(values):
            acks += of_type(await read_until(ws, lambda f: f["type"] == "ack"), "ack")
        assert acks == [{"type": "ack", "seq": n} for n in range(1, len(values) + 1)]
        assert of_type(frames, "message") == [
            message_frame(item, n, owner.username, value) for n, value in enumerate(values, start=1)
        ]


@pytest.mark.parametrize("ref", ["", "a", "ref with spaces ✓", "x" * 64])
async def test_ack_echoes_a_valid_ref(api: Api, ref: str) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        await publish(ws, 1, ref=ref)
        ack = await read_until(ws, lambda f: f["type"] == "ack")
        assert ack[-1] == {"type": "ack", "ref": ref, "seq": 1}


async def test_sequential_publishes_get_increasing_seq(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        seqs = []
        for n in range(10):
            await publish(ws, n, ref=str(n))
            ack = (await read_until(ws, lambda f: f["type"] == "ack"))[-1]
            assert ack["ref"] == str(n)
            seqs.append(ack["seq"])
        assert seqs == list(range(1, 11))


async def test_reader_publish_is_forbidden_and_the_socket_stays_open(api: Api) -> None:
    owner = await api.user()
    reader = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, reader, "reader")
    ws, _ = await ready(api.server, item, reader.token)
    async with ws:
        await publish(ws, {"x": 1}, ref="mine")
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert frames[-1] == error_frame("forbidden", "mine")
        await publish(ws, {"x": 2})
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert frames[-1] == error_frame("forbidden")
        assert without(await ping_barrier(ws), "presence") == []
    assert await history(api, owner, item) == []


async def test_demoted_writer_publish_is_forbidden(api: Api) -> None:
    owner = await api.user()
    member = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, member, "writer")
    ws, hello = await ready(api.server, item, member.token)
    async with ws:
        assert hello["role"] == "writer"
        await api.share(owner, item, member, "reader")
        await publish(ws, "late", ref="r")
        frames = await read_until(ws, lambda f: f["type"] in ("error", "ack"))
        assert frames[-1] == error_frame("forbidden", "r")
        assert without(await ping_barrier(ws), "presence") == []
    assert await history(api, owner, item) == []


BAD_FRAMES: dict[str, tuple[str, str | None]] = {
    "invalid-json": ("{not json", None),
    "truncated-json": ('{"type":"publish","data":1', None),
    "empty": ("", None),
    "array": ('[{"type":"ping"}]', None),
    "number": ("42", None),
    "string": ('"ping"', None),
    "null": ("null", None),
    "unknown-type": ('{"type":"subscribe","ref":"u"}', "u"),
    "no-type": ('{"data":1,"ref":"t"}', "t"),
    "type-not-a-string": ('{"type":1}', None),
    "missing-data": ('{"type":"publish","ref":"m"}', "m"),
    "ref-too-long": (json.dumps({"type": "publish", "data": 1, "ref": "x" * 65}), None),
    "ref-not-a-string": ('{"type":"publish","data":1,"ref":5}', None),
    "refresh-without-token": ('{"type":"refresh"}', None),
}


@pytest.mark.parametrize("case", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frame_is_a_bad_request_and_the_socket_stays_open(
    api: Api, case: tuple[str, str | None]
) -> None:
    text, ref = case
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        await ws.send(text)
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert without(frames, "presence") == [error_frame("bad_request", ref)]
        assert without(await ping_barrier(ws), "presence") == []
        # Nothing was stored, and the socket still publishes.
        await publish(ws, "after", ref="ok")
        frames = await read_until(ws, lambda f: f["type"] == "ack")
        assert frames[-1] == {"type": "ack", "ref": "ok", "seq": 1}
    assert [m["data"] for m in await history(api, owner, item)] == ["after"]


async def test_ping_pong(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        assert await recv(ws) == {
            "type": "presence",
            "event": "join",
            "user": owner.username,
            "count": 1,
        }
        for _ in range(3):
            await ws.send('{"type":"ping"}')
            assert await recv(ws) == {"type": "pong"}
        # Unknown fields are ignored.
        await ws.send('{"type":"ping","ref":"p","extra":[1]}')
        assert await recv(ws) == {"type": "pong"}


# Limits.


async def test_binary_frame_closes_with_1003(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        await ws.send(b'{"type":"ping"}')
        code, _ = await closed(ws)
        assert code == 1003


def _publish_text(size: int, char: str = "x") -> str:
    """A publish frame of exactly `size` bytes (UTF-8), `char` being 1 or 2 bytes."""
    head, tail = '{"type":"publish","data":"', '"}'
    room = size - len(head) - len(tail)
    width = len(char.encode())
    assert room % width == 0
    text = head + char * (room // width) + tail
    assert len(text.encode()) == size
    return text


async def test_frame_size_limit(make_server: MakeServer) -> None:
    async with started(make_server, max_message_bytes=1024) as api:
        owner = await api.user()
        item = await api.item(owner)
        ws, _ = await ready(api.server, item, owner.token)
        async with ws:
            await ws.send(_publish_text(1024))
            frames = await read_until(ws, lambda f: f["type"] == "ack")
            assert frames[-1] == {"type": "ack", "seq": 1}
            await ws.send(_publish_text(1025))
            code, _ = await closed(ws)
            assert code == 1009
        # Bytes, not characters: two-byte characters count twice.
        ws, _ = await ready(api.server, item, owner.token)
        async with ws:
            await ws.send(_publish_text(1024, "é"))
            frames = await read_until(ws, lambda f: f["type"] == "ack")
            assert frames[-1] == {"type": "ack", "seq": 2}
            await ws.send(_publish_text(1026, "é"))
            code, _ = await closed(ws)
            assert code == 1009
        assert [m["seq"] for m in await history(api, owner, item)] == [1, 2]


# REST and channel together.


async def test_rest_publish_is_delivered_to_open_sockets(api: Api) -> None:
    owner = await api.user()
    writer = await api.user()
    item = await api.item(owner)
    await api.share(owner, item, writer, "writer")
    sockets = [
        (await ready(api.server, item, owner.token))[0],
        (await ready(api.server, item, writer.token))[0],
    ]
    try:
        body = await api.post(writer, item, {"via": "rest"})
        assert body == {
            "item_id": item,
            "seq": 1,
            "sender": writer.username,
            "data": {"via": "rest"},
            "ts": body["ts"],
        }
        for ws in sockets:
            frames = await read_until(ws, lambda f: f["type"] == "message")
            assert without(frames, "presence") == [{"type": "message", **body}]
    finally:
        for ws in sockets:
            await ws.close()


async def test_channel_publishes_are_in_the_history(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    ws, _ = await ready(api.server, item, owner.token)
    async with ws:
        for n in range(5):
            await publish(ws, {"n": n}, ref=f"r{n}")
        frames = await read_until(ws, lambda f: f["type"] == "message" and f["seq"] == 5)
    received = of_type(frames, "message")
    stored = await history(api, owner, item)
    assert stored == [{k: v for k, v in f.items() if k != "type"} for f in received]
    assert [(m["seq"], m["sender"], m["data"]) for m in stored] == [
        (n + 1, owner.username, {"n": n}) for n in range(5)
    ]


async def test_without_since_only_later_messages_arrive(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(3):
        await api.post(owner, item, n)
    ws, hello = await ready(api.server, item, owner.token)
    async with ws:
        assert hello == ready_frame(item, owner, "owner", 3)
        await api.post(owner, item, 3)
        frames = await read_until(ws, lambda f: f["type"] == "message")
        assert of_type(frames, "message") == [message_frame(item, 4, owner.username, 3)]
        assert of_type(await ping_barrier(ws), "message") == []


async def test_without_since_while_others_publish(api: Api) -> None:
    """Connecting during a stream: exactly the messages after `last_seq`, in order."""
    owner = await api.user()
    item = await api.item(owner)
    stop = asyncio.Event()
    published: list[int] = []

    async def publisher() -> None:
        while not stop.is_set():
            published.append((await api.post(owner, item, "x"))["seq"])

    tasks = [asyncio.create_task(publisher()) for _ in range(3)]
    try:
        while len(published) < 5:
            await asyncio.sleep(0.01)
        sockets = [await ready(api.server, item, owner.token) for _ in range(3)]
        try:
            mark = len(published)
            while len(published) < mark + 10:
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.gather(*tasks)
            last = max(published)
            for ws, hello in sockets:
                assert 0 < hello["last_seq"] < last
                seqs = [f["seq"] for f in await messages_through(ws, last)]
                assert seqs == list(range(hello["last_seq"] + 1, last + 1))
        finally:
            for ws, _ in sockets:
                await ws.close()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
