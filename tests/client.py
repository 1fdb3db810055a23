"""Test clients: REST through httpx, channels through the `websockets` library."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.servers import LiveServer

PASSWORD = "correct horse battery"
TIMEOUT = 10.0


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


class Api:
    """A REST client bound to one live server."""

    def __init__(self, server: LiveServer, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http

    async def user(self, username: str | None = None, password: str = PASSWORD) -> User:
        """Register and log in a fresh user."""
        username = username or unique()
        r = await self.http.post(
            "/auth/register", json={"username": username, "password": password}
        )
        assert r.status_code == 201, r.text
        r = await self.http.post("/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        body = r.json()
        cookie = r.cookies["session"]
        self.http.cookies.clear()
        return User(body["user"]["id"], username, password, body["access_token"], cookie)

    async def item(self, owner: User, name: str = "item", item_id: str | None = None) -> str:
        body: dict[str, Any] = {"name": name}
        if item_id is not None:
            body["id"] = item_id
        r = await self.http.post("/items", json=body, headers=owner.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def share(self, owner: User, item_id: str, member: User, role: str = "writer") -> None:
        r = await self.http.put(
            f"/items/{item_id}/members/{member.username}",
            json={"role": role},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text

    async def post(self, user: User, item_id: str, data: Any) -> dict[str, Any]:
        r = await self.http.post(
            f"/items/{item_id}/messages", json={"data": data}, headers=user.headers
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


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


async def recv_until(
    ws: ClientConnection, frame_type: str, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The next frame of a type, skipping others (presence, acks...)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - loop.time()))
        if frame["type"] == frame_type:
            return frame


async def ready(
    server: LiveServer, item_id: str, token: str, **kwargs: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a channel and read its `ready` frame."""
    ws = await open_channel(server, item_id, token, **kwargs)
    frame = await recv(ws)
    assert frame["type"] == "ready", frame
    return ws, frame


async def rejection(url: str, timeout: float = TIMEOUT, **kwargs: Any) -> tuple[int, str]:
    """Connect, and return the close code and reason; fails if any data frame comes first."""
    async with connect(url, open_timeout=timeout, **kwargs) as ws:
        try:
            frame = await asyncio.wait_for(ws.recv(), timeout)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError(f"a data frame came before the close: {frame!r}")


async def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Read until the server closes; the close code and reason."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - loop.time()))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code, closed.rcvd.reason
