"""The world every adversarial case runs in (built once per module and backend), and what
the catalogues share: credentials, handshakes, the check that the service still works."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.servers import LiveServer
from tests.support import PASSWORD, TIMEOUT, Api, User, unique
from tests.tokens import access_claims, sign

MakeServer = Callable[..., AbstractContextManager[LiveServer]]

POLICY = 1008
# A handshake refusal arrives in milliseconds; this only bounds a server that hangs.
OPEN_TIMEOUT = 5.0
MAX_MESSAGE_BYTES = 65536  # the default, kept by the shared servers
MAX_REQUEST_BYTES = 1024 * 1024  # the default, kept by the shared servers

SQL_INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5); --",
    "admin'--",
    "x' UNION SELECT id, password_hash FROM users --",
    "%' OR 1=1 --",
    "\\'; DELETE FROM items; --",
]


NOW = int(time.time())  # claims overrides below are relative to the module's import
HOUR = 3600


@dataclass
class World:
    server: LiveServer
    owner: User
    reader: User  # a reader member of `item`
    outsider: User  # neither owner nor member of anything here
    item: str  # owned by `owner`
    other_item: str  # also owned by `owner`

    @property
    def origin(self) -> str:
        return self.server.base_url  # the server's own origin: http://127.0.0.1:PORT


@dataclass
class Ctx:
    world: World
    http: httpx.AsyncClient

    @property
    def api(self) -> Api:
        return Api(self.world.server, self.http)


def _sync_user(http: httpx.Client) -> User:
    username = unique("adv")
    r = http.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = http.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    cookie = r.cookies["session"]
    http.cookies.clear()
    return User(body["user"]["id"], username, PASSWORD, body["access_token"], cookie)


@pytest.fixture(scope="module")
def world(server: LiveServer) -> Iterator[World]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        owner, reader, outsider = _sync_user(http), _sync_user(http), _sync_user(http)
        items = []
        for _ in range(2):
            r = http.post("/items", json={"name": "adversarial"}, headers=owner.headers)
            assert r.status_code == 201, r.text
            items.append(r.json()["id"])
        r = http.put(
            f"/items/{items[0]}/members/{reader.username}",
            json={"role": "reader"},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text
    yield World(server, owner, reader, outsider, items[0], items[1])


@pytest.fixture
async def ctx(world: World) -> AsyncIterator[Ctx]:
    async with httpx.AsyncClient(base_url=world.server.base_url, timeout=30) as http:
        yield Ctx(world, http)


async def resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def fresh_login(ctx: Ctx) -> User:
    return await ctx.api.user(unique("adv"))


async def logged_out(ctx: Ctx, via: str) -> User:
    """A user whose only session was logged out with its cookie or with its token."""
    user = await fresh_login(ctx)
    headers = {"Cookie": f"session={user.cookie}"} if via == "cookie" else user.headers
    r = await ctx.http.post("/auth/logout", headers=headers)
    assert r.status_code == 204, r.text
    ctx.http.cookies.clear()
    return user


async def ticket(ctx: Ctx, item_id: str | None) -> str:
    body = {"item_id": item_id} if item_id else None
    r = await ctx.http.post("/auth/ws-ticket", json=body, headers=ctx.world.owner.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


@dataclass(frozen=True)
class Handshake:
    path: str  # with its query string
    headers: dict[str, str] = field(default_factory=dict)
    subprotocols: tuple[str, ...] = ()


@dataclass(frozen=True)
class HandshakeCase:
    id: str
    attack: Callable[[Ctx], Handshake | Awaitable[Handshake]]
    reason: str  # the close code is always 1008


def on_item(ctx: Ctx, token: str | None = None, **headers: str) -> Handshake:
    query = f"?token={token}" if token is not None else ""
    return Handshake(f"/items/{ctx.world.item}/ws{query}", headers)


def with_cookie(ctx: Ctx, cookie: str, origin: str | None = "own") -> Handshake:
    headers = {"Cookie": f"session={cookie}"}
    if origin is not None:
        headers["Origin"] = ctx.world.origin if origin == "own" else origin
    return Handshake(f"/items/{ctx.world.item}/ws", headers)


def forged(ctx: Ctx, **kwargs: Any) -> Handshake:
    """The owner's channel with a token of the owner's claims, built per `kwargs`."""
    overrides = kwargs.pop("claims", {})
    return on_item(ctx, sign(access_claims(ctx.world.owner, **overrides), **kwargs))


async def refusal(server: LiveServer, hs: Handshake) -> tuple[int, str, str | None]:
    """Connect; the close code, reason and selected subprotocol. Fails with a readable
    message when the handshake is refused at the HTTP level, hangs, or a frame comes."""
    url = server.ws_url + hs.path
    try:
        ws = await connect(
            url,
            open_timeout=OPEN_TIMEOUT,
            additional_headers=hs.headers,
            subprotocols=list(hs.subprotocols) or None,  # type: ignore[arg-type]
            max_size=None,
        )
    except InvalidStatus as exc:
        raise AssertionError(
            f"handshake refused with HTTP {exc.response.status_code} instead of 101 + 1008"
        ) from exc
    except TimeoutError as exc:
        raise AssertionError(f"no answer to the handshake within {OPEN_TIMEOUT} s") from exc
    async with ws:
        try:
            frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason, ws.subprotocol
    raise AssertionError(f"a data frame came before the close: {frame!r}")


def as_owner(ctx: Ctx) -> dict[str, str]:
    return ctx.world.owner.headers


async def assert_service_works(ctx: Ctx) -> None:
    """The owner can still read their items and the item's history: nothing was dropped,
    deleted or locked by the attack."""
    r = await ctx.http.get("/items", headers=as_owner(ctx))
    assert r.status_code == 200, r.text
    assert {ctx.world.item, ctx.world.other_item} <= {i["id"] for i in r.json()}
    r = await ctx.http.get(f"/items/{ctx.world.item}/members", headers=as_owner(ctx))
    assert r.status_code == 200, r.text
    assert {"username": ctx.world.reader.username, "role": "reader"} in r.json()
