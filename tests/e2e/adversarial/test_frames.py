"""Catalogue 3: frames sent on an open channel: binary, oversized, invalid JSON, wrong
fields, bad refreshes. Outcome: an `error` frame with the exact code (the socket stays
open), an ack, or the exact close code."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.adversarial.world import MAX_MESSAGE_BYTES, NOW, OPEN_TIMEOUT, Ctx
from tests.support import TIMEOUT, closed, read_until, recv
from tests.tokens import WRONG_KEY, access_claims, padded, sign


@dataclass(frozen=True)
class Error:
    code: str
    ref: str | None = None


@dataclass(frozen=True)
class Acked:
    data: Any
    ref: str | None = None


@dataclass(frozen=True)
class Closed:
    code: int


@dataclass(frozen=True)
class FrameCase:
    id: str
    frame: Callable[[Ctx], str | bytes]
    expect: Error | Acked | Closed
    role: str = "owner"


def text(value: str) -> Callable[[Ctx], str]:
    return lambda c: value


def publish(data: Any, ref: str | None = None, **extra: Any) -> Callable[[Ctx], str]:
    frame: dict[str, Any] = {"type": "publish", "data": data, **extra}
    if ref is not None:
        frame["ref"] = ref
    return text(json.dumps(frame))


def refresh_with(token: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
    return lambda c: json.dumps({"type": "refresh", "token": token(c)})


def publish_frame_of_size(size: int) -> str:
    empty = '{"type":"publish","data":""}'
    return '{"type":"publish","data":"' + "x" * (size - len(empty)) + '"}'


FRAMES = [
    FrameCase("binary-frame", lambda c: b'{"type":"ping"}', Closed(1003)),
    FrameCase(
        "text-one-byte-over", text(publish_frame_of_size(MAX_MESSAGE_BYTES + 1)), Closed(1009)
    ),
    FrameCase(
        "text-multibyte-over",  # fewer characters than the limit, more bytes
        text('{"type":"publish","data":"' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}'),
        Closed(1009),
    ),
    FrameCase(
        "text-exactly-max-bytes",
        text(publish_frame_of_size(MAX_MESSAGE_BYTES)),
        Acked("x" * (MAX_MESSAGE_BYTES - len('{"type":"publish","data":""}'))),
    ),
    FrameCase("invalid-json", text('{"type": "publish", "data": '), Error("bad_request")),
    FrameCase("json-array", text("[]"), Error("bad_request")),
    FrameCase("json-string", text('"publish"'), Error("bad_request")),
    FrameCase("json-null", text("null"), Error("bad_request")),
    FrameCase("json-number", text("42"), Error("bad_request")),
    FrameCase("empty-text", text(""), Error("bad_request")),
    FrameCase("nan-literal", text('{"type":"publish","data":NaN}'), Error("bad_request")),
    FrameCase("number-overflow", text('{"type":"publish","data":1e999}'), Error("bad_request")),
    FrameCase(
        "lone-surrogate-escape", text('{"type":"publish","data":"\\ud800"}'), Error("bad_request")
    ),
    FrameCase(
        "deeply-nested",
        text('{"type":"publish","data":' + "[" * 20_000 + "]" * 20_000 + "}"),
        Error("bad_request"),
    ),
    FrameCase("unknown-type", text('{"type":"subscribe","ref":"r1"}'), Error("bad_request", "r1")),
    FrameCase("type-missing", text('{"data":1,"ref":"r2"}'), Error("bad_request", "r2")),
    FrameCase("type-not-a-string", text('{"type":1,"ref":"r3"}'), Error("bad_request", "r3")),
    FrameCase(
        "type-sql-injection",
        text(json.dumps({"type": "publish' OR '1'='1", "data": 1, "ref": "r4"})),
        Error("bad_request", "r4"),
    ),
    FrameCase(
        "publish-without-data", text('{"type":"publish","ref":"r5"}'), Error("bad_request", "r5")
    ),
    FrameCase("ref-65-chars", publish(1, "r" * 65), Error("bad_request")),
    FrameCase(
        "ref-not-a-string", text('{"type":"publish","data":1,"ref":7}'), Error("bad_request")
    ),
    FrameCase("ref-64-chars", publish(1, "r" * 64), Acked(1, "r" * 64)),
    FrameCase(
        "data-sql-injection-is-just-data",
        publish("'; DROP TABLE messages; --", "sqli"),
        Acked("'; DROP TABLE messages; --", "sqli"),
    ),
    FrameCase("data-nul-is-just-data", publish("a\x00b", "nul"), Acked("a\x00b", "nul")),
    FrameCase(
        "extra-fields-ignored",
        publish(2, "extra", sender="someone-else", seq=999_999, item_id="other"),
        Acked(2, "extra"),
    ),
    FrameCase("reader-publish", publish(1, "r6"), Error("forbidden", "r6"), role="reader"),
    FrameCase("refresh-garbage", refresh_with(lambda c: "not-a-jwt"), Error("bad_request")),
    FrameCase(
        "refresh-alg-none",
        refresh_with(lambda c: sign(access_claims(c.world.owner), key=None, algorithm="none")),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-wrong-key",
        refresh_with(lambda c: sign(access_claims(c.world.owner), key=WRONG_KEY)),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-expired",
        refresh_with(lambda c: sign(access_claims(c.world.owner, exp=NOW - 60))),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-unknown-session",
        refresh_with(lambda c: sign(access_claims(c.world.owner, sid=uuid.uuid4().hex))),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-10kB", refresh_with(lambda c: padded(c.world.owner, 10_000)), Error("bad_request")
    ),
    FrameCase(
        "refresh-token-not-a-string",
        text('{"type":"refresh","token":{"$ne":null}}'),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-another-users-token",
        refresh_with(lambda c: c.world.outsider.token),
        Error("forbidden"),
    ),
]


async def open_as(ctx: Ctx, role: str) -> ClientConnection:
    user = ctx.world.owner if role == "owner" else ctx.world.reader
    ws = await connect(
        f"{ctx.world.server.ws_url}/items/{ctx.world.item}/ws?token={user.token}",
        open_timeout=OPEN_TIMEOUT,
        max_size=None,
    )
    try:
        assert (await recv(ws))["type"] == "ready"
    except BaseException:
        await ws.close()
        raise
    return ws


def error_frame(expect: Error) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": expect.code}
    if expect.ref is not None:
        frame["ref"] = expect.ref
    return frame


@pytest.mark.parametrize("case", FRAMES, ids=lambda c: c.id)
async def test_frame_attack(case: FrameCase, ctx: Ctx) -> None:
    ws = await open_as(ctx, case.role)
    async with ws:
        await ws.send(case.frame(ctx))
        expect = case.expect
        if isinstance(expect, Closed):
            code, _ = await closed(ws)
            assert code == expect.code
            return
        if isinstance(expect, Error):
            frame = (await read_until(ws, "error"))[-1]
            assert isinstance(frame.pop("detail"), str) and frame == error_frame(expect)
        else:
            ack, message = await _ack_and_message(ws)
            assert set(ack) == ({"type", "seq", "ref"} if expect.ref else {"type", "seq"})
            assert ack.get("ref") == expect.ref
            assert message["data"] == expect.data
            assert message["sender"] == ctx.world.owner.username
            assert message["item_id"] == ctx.world.item
        # The socket stays open and keeps working.
        await ws.send('{"type":"ping"}')
        assert (await read_until(ws, "pong"))[-1] == {"type": "pong"}


async def _ack_and_message(ws: ClientConnection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ack of the one publish sent, and its message frame (in either order)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    ack: dict[str, Any] | None = None
    messages: dict[int, dict[str, Any]] = {}
    while ack is None or ack["seq"] not in messages:
        frame = await recv(ws, max(0.01, deadline - loop.time()))
        if frame["type"] == "ack":
            ack = frame
        elif frame["type"] == "message":
            messages[frame["seq"]] = frame
    return ack, messages[ack["seq"]]
