"""Unit tests of `HeldHead` (a response's head and body in one write, nothing reordered),
alone and in the service's HTTP protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.server import ServerState

from api.response_writes import JOIN_LIMIT, HeldHead
from api.server import LimitedHttpToolsProtocol, RequestLimits, protocol_with

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Transport:
    """Records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data if not self.closed else b"<after close>" + data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def held() -> tuple[HeldHead, Transport]:
    transport = Transport()
    responses = HeldHead(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    responses.expect_head()
    return responses, transport


async def test_a_head_and_the_body_that_follows_it_are_one_write() -> None:
    responses, transport = held()
    responses.write(HEAD)
    assert transport.writes == []
    responses.write(b"{}")
    assert transport.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the end-of-turn flush finds nothing held
    assert transport.writes == [HEAD + b"{}"]


async def test_a_head_without_a_body_in_the_same_turn_is_written_at_its_end() -> None:
    responses, transport = held()
    responses.write(HEAD)
    await asyncio.sleep(0)
    assert transport.writes == [HEAD]
    responses.write(b"{}")  # a body that follows later goes as it is
    assert transport.writes == [HEAD, b"{}"]


async def test_only_a_cycles_first_write_is_held() -> None:
    responses, transport = held()
    responses.write(HEAD)
    responses.write(b"a")
    responses.write(b"b")  # a streamed body's next chunk: at once
    assert transport.writes == [HEAD + b"a", b"b"]
    responses.expect_head()  # the next response on the connection
    responses.write(HEAD)
    responses.write(b"c")
    assert transport.writes == [HEAD + b"a", b"b", HEAD + b"c"]


async def test_100_continue_goes_out_at_once_and_the_head_is_still_held() -> None:
    responses, transport = held()
    responses.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    responses.write(HEAD)
    responses.write(b"{}")
    assert transport.writes[1:] == [HEAD + b"{}"]


async def test_a_large_body_is_not_copied_behind_its_head() -> None:
    responses, transport = held()
    body = b"x" * (JOIN_LIMIT + 1)
    responses.write(HEAD)
    responses.write(body)
    assert transport.writes == [HEAD, body]


async def test_flush_and_close_write_a_held_head_first() -> None:
    responses, transport = held()
    responses.write(HEAD)
    responses.flush()  # what the protocol writes itself comes after it
    assert transport.writes == [HEAD]
    responses.expect_head()
    responses.write(HEAD)
    responses.close()
    assert transport.writes == [HEAD, HEAD]
    assert transport.closed
    assert responses.is_closing()  # the rest is the transport's own


async def test_nothing_is_written_twice_by_the_end_of_turn_flush() -> None:
    responses, transport = held()
    responses.write(HEAD)
    responses.flush()
    await asyncio.sleep(0)
    assert transport.writes == [HEAD]


# --- on the service's HTTP protocol, with a stand-in transport ---------------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class PeerTransport(Transport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.1", 5000), "sockname": ("192.0.2.2", 80)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


App = Callable[[Any, Any, Any], Awaitable[None]]


async def small(scope: Any, receive: Any, send: Any) -> None:
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def connected(app: App) -> LimitedHttpToolsProtocol:
    config = Config(app, access_log=False)
    config.load()
    protocol = protocol_with(RequestLimits(16384, 5.0, 100))(config, ServerState(), {})
    protocol.connection_made(PeerTransport())  # type: ignore[arg-type]
    return protocol


async def served(app: App, *chunks: bytes) -> PeerTransport:
    """What the protocol writes for `chunks` received, once the app is done."""
    return await served_on(connected(app), *chunks)


async def served_on(protocol: LimitedHttpToolsProtocol, *chunks: bytes) -> PeerTransport:
    for chunk in chunks:
        protocol.data_received(chunk)
    for _ in range(10):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return cast(PeerTransport, protocol.transport)


async def test_the_protocol_writes_each_small_response_once() -> None:
    transport = await served(small, REQUEST)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n/"]


async def test_pipelined_responses_are_written_in_order_one_write_each() -> None:
    transport = await served(small, REQUEST.replace(b"/", b"/a", 1) + REQUEST + REQUEST)
    assert [write.rsplit(b"\r\n", 1)[1] for write in transport.writes] == [b"/a", b"/", b"/"]


async def test_a_400_for_a_bad_request_goes_after_a_held_head() -> None:
    protocol: Any = None

    async def head_then_garbage(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        # The next bytes arrive before the end of this turn, while the head is held.
        protocol.data_received(b"NOT HTTP\r\n\r\n")
        await send({"type": "http.response.body", "body": b"late"})

    protocol = connected(head_then_garbage)
    transport = await served_on(protocol, REQUEST)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[1].startswith(b"HTTP/1.1 400 ")


async def test_a_head_response_is_written_when_it_completes_before_a_shutdown() -> None:
    # HEAD: no body follows the head; the server shutting down in the same turn closes
    # the connection at once, as the response is complete.
    protocol: Any = None

    async def head_then_shutdown(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        protocol.shutdown()

    protocol = connected(head_then_shutdown)
    transport = await served_on(protocol, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"]
    assert transport.closed


async def test_a_held_head_after_the_end_was_sent_raises_nothing() -> None:
    # A refusal ended the connection (write_eof) while a response was pending: its head,
    # flushed at the end of the turn, cannot go out, and must not raise there.
    class Ended(Transport):
        def write(self, data: bytes) -> None:
            raise RuntimeError("Cannot call write() after write_eof()")

    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: failures.append(context))
    responses = HeldHead(Ended(), loop)  # type: ignore[arg-type]
    responses.expect_head()
    responses.write(HEAD)
    await asyncio.sleep(0)
    assert failures == []
