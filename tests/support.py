"""Helpers for tests against a live server.

Setup over REST (users, items, members, messages) goes through the project's own client,
`api.client.Client`, so every run exercises it. Channels are raw `websockets` sockets
where a test must see the frames and close codes themselves; scenarios that only need
messages in and out can use `Api.client()` and its channels instead.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.client import Channel, Client, Message
from api.client.retry import Backoff
from tests.servers import LiveServer

PASSWORD = "correct horse battery"
TIMEOUT = 10.0
# Reconnect fast in tests; the jitter stays.
FAST = Backoff(initial=0.05, maximum=0.5)


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@dataclass
class User:
    id: str
    username: str
    password: str
    token: str
    cookie: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every test client: making one takes a good part of a second
    (loading the CA bundle), and each `Client` would make its own."""
    return ssl.create_default_context()


def transport() -> httpx.AsyncHTTPTransport:
    """A `Client`'s HTTP transport sharing that TLS context (pass it as `transport=`)."""
    return httpx.AsyncHTTPTransport(verify=_tls())


class _SessionCookie(httpx.AsyncHTTPTransport):
    """Remembers the `session` cookie the server sets (a `Client` keeps it to itself)."""

    value: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        for header in response.headers.get_list("set-cookie"):
            cookie: SimpleCookie = SimpleCookie(header)
            if "session" in cookie:
                self.value = cookie["session"].value
        return response


class Api:
    """One live server: `http` for raw REST checks, `api.client.Client` for setup."""

    def __init__(self, server: LiveServer, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http

    def client(self, user: User | None = None, token: str | None = None, **kwargs: Any) -> Client:
        """A client of the server holding `user`'s token (or `token`); `async with` it."""
        kwargs.setdefault("backoff", FAST)
        kwargs.setdefault("transport", transport())
        return Client(self.server.base_url, user.token if user else token, **kwargs)

    async def login(self, username: str, password: str = PASSWORD) -> tuple[str, str]:
        """A new session: its access token and cookie."""
        cookie = _SessionCookie(verify=_tls())
        async with self.client(transport=cookie) as client:
            token = await client.login(username, password)
        assert cookie.value is not None, "login set no session cookie"
        return token["access_token"], cookie.value

    async def user(self, username: str | None = None, password: str = PASSWORD) -> User:
        """Register and log in a fresh user."""
        username = username or unique()
        async with self.client() as client:
            account = await client.register(username, password)
        token, cookie = await self.login(username, password)
        return User(account["id"], username, password, token, cookie)

    async def item(self, owner: User, name: str = "item", item_id: str | None = None) -> str:
        async with self.client(owner) as client:
            return (await client.create_item(name, item_id))["id"]

    async def share(self, owner: User, item_id: str, member: User, role: str = "writer") -> None:
        assert role in ("reader", "writer"), role
        async with self.client(owner) as client:
            await client.add_member(item_id, member.username, role)  # type: ignore[arg-type]

    async def post(self, user: User, item_id: str, data: Any) -> Message:
        async with self.client(user) as client:
            return await client.post_message(item_id, data)

    async def history(self, user: User, item_id: str, after: int = 0) -> list[Message]:
        async with self.client(user) as client:
            return [m async for m in client.history(item_id, after=after)]


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


# Sessions and REST reads.


def cookie_headers(cookie: str) -> dict[str, str]:
    return {"Cookie": f"session={cookie}"}


async def login(api: Api, user: User) -> tuple[str, str]:
    """Another session of `user`: its access token and cookie."""
    return await api.login(user.username, user.password)


async def refreshed(api: Api, token: str) -> str:
    async with api.client(token=token) as client:
        return (await client.refresh())["access_token"]


async def logout(api: Api, token: str) -> None:
    r = await api.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    api.http.cookies.clear()


async def presence(api: Api, user: User, item_id: str) -> dict[str, Any]:
    async with api.client(user) as client:
        return dict(await client.presence(item_id))


async def history(api: Api, user: User, item_id: str, after: int = 0) -> list[dict[str, Any]]:
    return [dict(m) for m in await api.history(user, item_id, after)]


async def next_messages(channel: Channel, count: int, timeout: float = TIMEOUT) -> list[Message]:
    """The next `count` messages of a client's channel."""
    async with asyncio.timeout(timeout):
        return [await anext(channel) for _ in range(count)]


# Raw channel sockets.


def channel_url(server: LiveServer, item_id: str, **query: str) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}/items/{item_id}/ws" + (f"?{qs}" if qs else "")


async def open_channel(
    server: LiveServer, item_id: str, token: str | None = None, **kwargs: Any
) -> ClientConnection:
    query = dict(kwargs.pop("query", {}))
    if token is not None:
        query["token"] = token
    return await connect(channel_url(server, item_id, **query), open_timeout=TIMEOUT, **kwargs)


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, str), "the server sends text frames only"
    return json.loads(raw)  # type: ignore[no-any-return]


async def ready(
    server: LiveServer, item_id: str, token: str, **kwargs: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a channel with `?token=` and read its `ready` frame."""
    query = {**kwargs.pop("query", {}), "token": token}
    return await ready_via(server, item_id, query=query, **kwargs)


async def ready_via(
    server: LiveServer, item_id: str, **kwargs: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a channel (token, cookie, header or subprotocol: as `kwargs` say); its `ready`."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    ws = await connect(channel_url(server, item_id, **kwargs.pop("query", {})), **kwargs)
    try:
        frame = await recv(ws)
    except BaseException:
        await ws.close()
        raise
    assert frame["type"] == "ready", frame
    return ws, frame


async def read_until(
    ws: ClientConnection,
    done: str | Callable[[dict[str, Any]], bool],
    timeout: float = TIMEOUT,
) -> list[dict[str, Any]]:
    """Every frame up to and including the first that is `done` (a predicate, or a frame
    type: the first frame of that type)."""
    is_done = (lambda f: f["type"] == done) if isinstance(done, str) else done
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames: list[dict[str, Any]] = []
    while True:
        frame = await recv(ws, max(0.01, deadline - loop.time()))
        frames.append(frame)
        if is_done(frame):
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
    frames = await read_until(ws, "pong", timeout)
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
    kwargs.setdefault("open_timeout", TIMEOUT)
    async with connect(url, **kwargs) as ws:
        try:
            frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            return exc.rcvd.code, exc.rcvd.reason, ws.subprotocol
        raise AssertionError(f"a data frame came before the close: {frame!r}")


# Expected frames.

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
