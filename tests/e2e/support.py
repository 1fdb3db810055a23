"""Helpers shared by the channel end-to-end tests (frames, tokens, polling)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import httpx
import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.client import PASSWORD, TIMEOUT, Api, User, channel_url, recv
from tests.servers import TEST_SECRET, LiveServer

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class _Timestamp:
    """Equal to any ISO-8601 UTC timestamp ending in `Z`."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and TS_RE.fullmatch(other) is not None

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<ISO-8601 Z timestamp>"


class _NonEmptyStr:
    """Equal to any non-empty string (free-form `detail` fields)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other != ""

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<non-empty str>"


TS: Any = _Timestamp()
TEXT: Any = _NonEmptyStr()


def message_frame(item_id: str, seq: int, sender: str, data: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "item_id": item_id,
        "seq": seq,
        "sender": sender,
        "data": data,
        "ts": TS,
    }


def error_frame(code: str, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": TEXT}
    if ref is not None:
        frame["ref"] = ref
    return frame


def presence_frame(event: str, user: str, count: int) -> dict[str, Any]:
    return {"type": "presence", "event": event, "user": user, "count": count}


def ready_frame(
    item_id: str, user: User, role: str, last_seq: int, recovered: bool | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "ready",
        "item_id": item_id,
        "user": {"id": user.id, "username": user.username},
        "role": role,
        "last_seq": last_seq,
    }
    if recovered is not None:
        frame["recovered"] = recovered
    return frame


# Reading.


async def read_until(
    ws: ClientConnection,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = TIMEOUT,
) -> list[dict[str, Any]]:
    """Every frame up to and including the first one for which `done` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames: list[dict[str, Any]] = []
    while True:
        frame = await recv(ws, max(0.01, deadline - loop.time()))
        frames.append(frame)
        if done(frame):
            return frames


def of_type(frames: Iterable[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] in types]


def without(frames: Iterable[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] not in types]


async def messages_through(
    ws: ClientConnection, last_seq: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The message frames received until one with `seq >= last_seq` arrives."""
    frames = await read_until(
        ws, lambda f: f["type"] == "message" and f["seq"] >= last_seq, timeout
    )
    return of_type(frames, "message")


async def ping_barrier(ws: ClientConnection, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Send a ping; the frames received before the pong (proves the socket is open)."""
    await ws.send('{"type":"ping"}')
    frames = await read_until(ws, lambda f: f["type"] == "pong", timeout)
    assert frames[-1] == {"type": "pong"}
    return frames[:-1]


async def publish(ws: ClientConnection, data: Any, ref: str | None = None) -> None:
    frame: dict[str, Any] = {"type": "publish", "data": data}
    if ref is not None:
        frame["ref"] = ref
    await ws.send(json.dumps(frame))


async def closed(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Read (discarding frames) until the server's close frame; its code and reason."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time()))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return exc.rcvd.code, exc.rcvd.reason


async def reject(url: str, **kwargs: Any) -> tuple[int, str, str | None]:
    """Connect (the handshake must complete) and expect a close before any data frame.

    Returns the close code, the reason and the subprotocol the server selected.
    """
    async with connect(url, open_timeout=TIMEOUT, **kwargs) as ws:
        try:
            frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            return exc.rcvd.code, exc.rcvd.reason, ws.subprotocol
        raise AssertionError(f"a data frame came before the close: {frame!r}")


# Credentials.


def cookie_headers(cookie: str) -> dict[str, str]:
    return {"Cookie": f"session={cookie}"}


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def sign(claims: dict[str, Any], key: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        # The test key is shorter than PyJWT recommends for HS384/HS512.
        warnings.simplefilter("ignore")
        return jwt.encode(claims, key, algorithm=algorithm)


def unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token (no signature)."""

    def b64(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def access_claims(user: User, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid access token of `user`'s session (from its real token)."""
    real = claims_of(user.token)
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": real["sub"],
        "sid": real["sid"],
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


async def login(api: Api, user: User) -> tuple[str, str]:
    """Another session of `user`: its access token and cookie."""
    r = await api.http.post("/auth/login", json={"username": user.username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookie = r.cookies["session"]
    api.http.cookies.clear()
    return r.json()["access_token"], cookie


async def refreshed(api: Api, token: str) -> str:
    r = await api.http.post("/auth/refresh", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def logout(api: Api, token: str) -> None:
    r = await api.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    api.http.cookies.clear()


# Waiting.


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT, interval: float = 0.05
) -> None:
    """Poll `check` until it is true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def sleep_until(wall_clock: float) -> None:
    """Sleep until `time.time()` has passed `wall_clock` (a bounded wait, not an assert)."""
    delay = wall_clock - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def presence(api: Api, user: User, item_id: str) -> dict[str, Any]:
    r = await api.http.get(f"/items/{item_id}/presence", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def history(api: Api, user: User, item_id: str, after: int = 0) -> list[dict[str, Any]]:
    r = await api.http.get(
        f"/items/{item_id}/messages",
        params={"after": after, "limit": 1000},
        headers=user.headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@asynccontextmanager
async def started(
    make_server: Callable[..., AbstractContextManager[LiveServer]], **overrides: Any
) -> AsyncIterator[Api]:
    """A server of `make_server` with its own settings, and an `Api` bound to it.

    Entered and left in a worker thread: setting up a PostgreSQL database runs its own
    event loop, and starting or stopping uvicorn blocks.
    """
    manager = make_server(**overrides)
    server = await asyncio.to_thread(manager.__enter__)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            yield Api(server, http)
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def ready_via(
    server: LiveServer, item_id: str, **kwargs: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a channel with no `?token=` (cookie, header or subprotocol); its `ready` frame."""
    ws = await connect(channel_url(server, item_id, **kwargs.pop("query", {})), **kwargs)
    try:
        frame = await recv(ws)
    except BaseException:
        await ws.close()
        raise
    assert frame["type"] == "ready", frame
    return ws, frame
