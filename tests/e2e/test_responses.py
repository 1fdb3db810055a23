"""Responses as they leave the server: framing, 100 Continue, pipelining, large bodies."""

from __future__ import annotations

import asyncio
import json

from tests.servers import LiveServer
from tests.support import Api

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a content-length: its head and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), 30)


async def test_pipelined_requests_are_answered_in_order(server: LiveServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(HEALTHZ + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTHZ)
        statuses = []
        for _ in range(3):
            head, body = await _response(reader)
            statuses.append(head.split(b" ", 2)[1])
            json.loads(body)
        assert statuses == [b"200", b"404", b"200"]
    finally:
        writer.close()


async def test_a_bad_request_behind_a_good_one_comes_after_its_answer(
    server: LiveServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(HEALTHZ)
        head, body = await _response(reader)
        assert head.startswith(b"HTTP/1.1 200 ") and body == b'{"status":"ok"}'
        writer.write(b"NOT HTTP\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 30)  # the server closes after it
        assert rest.startswith(b"HTTP/1.1 400 "), rest
    finally:
        writer.close()


async def test_a_publish_that_expects_100_continue_gets_it_before_its_201(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    body = json.dumps({"data": {"n": 1}}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", api.server.port)
    try:
        writer.write(
            f"POST /items/{item}/messages HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {owner.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        head, answer = await _response(reader)
        assert head.startswith(b"HTTP/1.1 201 "), head
        assert json.loads(answer)["data"] == {"n": 1}
    finally:
        writer.close()


async def test_a_large_response_arrives_whole(api: Api) -> None:
    owner = await api.user()
    item = await api.item(owner)
    for n in range(3):
        await api.post(owner, item, {"n": n, "pad": "p" * 40_000})
    page = await api.http.get(
        f"/items/{item}/messages", headers={"Authorization": f"Bearer {owner.token}"}
    )
    assert page.status_code == 200
    assert len(page.content) > 64 * 1024  # written apart from its head
    assert int(page.headers["content-length"]) == len(page.content)
    assert [m["data"]["n"] for m in page.json()] == [0, 1, 2]
