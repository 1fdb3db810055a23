"""Adversarial catalogue: bad inputs against a real server, each with its exact outcome.

Four catalogues, each a list of small dataclasses (an id, the attack, the outcome the
contract fixes), run against the shared server of every backend:

- `HANDSHAKES`: channel handshakes with forged, expired, not-yet-valid, wrong-algorithm,
  oversized and used credentials, tampered and fixated cookies, foreign origins and
  malformed item ids. Outcome: HTTP 101, then close 1008 with the exact reason.
- `REQUESTS`: REST calls with the same credentials, malformed ids and query values,
  SQL injection in every field and oversized bodies. Outcome: the exact status (and
  the field a 422 names); after each, the database still answers.
- `FRAMES`: frames sent on an open channel: binary, oversized, invalid JSON, wrong
  fields, bad refreshes. Outcome: an `error` frame with the exact code (the socket
  stays open) or the exact close code.
- `RAW_FRAMES`: frames the `websockets` client refuses to send (invalid UTF-8 text,
  unmasked, reserved opcode), written byte by byte on a raw socket.

Scenario tests follow: a publish flood on a rate-limited server, a client that never
reads, session fixation, and SQL injection through every field followed by a full
round trip through the database.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import os
import socket
import struct
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.servers import TEST_SECRET, LiveServer
from tests.support import PASSWORD, TIMEOUT, Api, User, closed, read_until, recv, unique

MakeServer = Callable[..., AbstractContextManager[LiveServer]]

POLICY = 1008
WRONG_KEY = "an-attacker-key-that-is-also-long-enough-0123456789"
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


# --------------------------------------------------------------------------------------
# Tokens, built by hand so that any header, algorithm and signature can be forged.


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def jwt_token(
    claims: dict[str, Any],
    *,
    key: str | None = TEST_SECRET,
    alg: str = "HS256",
    digest: str = "HS256",
    header: dict[str, Any] | None = None,
) -> str:
    """A JWT whose header says `alg`, HMAC-signed with `digest` and `key` (None: unsigned).

    Header and signature are independent, which is what algorithm-confusion attacks do:
    e.g. a header saying RS256 over an HMAC made with the server's own secret.
    """
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    signing_input = f"{b64json(head)}.{b64json(claims)}"
    if key is None:
        return f"{signing_input}."
    mac = hmac.new(key.encode(), signing_input.encode(), DIGESTS[digest]).digest()
    return f"{signing_input}.{b64url(mac)}"


def payload_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def claims(user: User, **overrides: Any) -> dict[str, Any]:
    """Valid access-token claims of `user`'s real session, with overrides (None drops)."""
    real = payload_of(user.token)
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": real["sub"],
        "sid": real["sid"],
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def padded(user: User, size: int, key: str = WRONG_KEY) -> str:
    """A well-formed HS256 token of about `size` bytes (a padding claim), signed by `key`."""
    token = jwt_token(claims(user, pad=""), key=key)
    pad = "p" * int((size - len(token)) * 3 / 4)
    return jwt_token(claims(user, pad=pad), key=key)


# --------------------------------------------------------------------------------------
# The world every catalogue case runs in: built once per module and backend.


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


# --------------------------------------------------------------------------------------
# Catalogue 1: channel handshakes. Outcome: 101, then 1008 with the exact reason.


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
    return on_item(ctx, jwt_token(claims(ctx.world.owner, **overrides), **kwargs))


async def reused_ticket(ctx: Ctx) -> Handshake:
    token = await ticket(ctx, ctx.world.item)
    async with connect(
        f"{ctx.world.server.ws_url}/items/{ctx.world.item}/ws?token={token}",
        open_timeout=OPEN_TIMEOUT,
    ) as ws:
        assert (await recv(ws))["type"] == "ready"
    return on_item(ctx, token)


async def logged_out_cookie(ctx: Ctx) -> Handshake:
    return with_cookie(ctx, (await logged_out(ctx, "cookie")).cookie)


async def logged_out_token(ctx: Ctx) -> Handshake:
    user = await logged_out(ctx, "token")
    return Handshake(f"/items/{ctx.world.item}/ws?token={user.token}")


def at_item(item_path: str) -> Callable[[Ctx], Handshake]:
    """The owner's valid token on an item path segment sent as is (percent-encoded)."""
    return lambda c: Handshake(f"/items/{item_path}/ws?token={c.world.owner.token}")


NOW = int(time.time())  # claims overrides below are relative to the module's import
HOUR = 3600

HANDSHAKES = [
    # No credential at all.
    HandshakeCase("no-credential", lambda c: on_item(c), "missing credentials"),
    HandshakeCase("empty-token-param", lambda c: on_item(c, ""), "missing credentials"),
    HandshakeCase(
        "basic-auth-header",
        lambda c: on_item(c, Authorization="Basic YWRtaW46YWRtaW4="),
        "missing credentials",
    ),
    # Malformed and forged tokens.
    HandshakeCase("garbage-token", lambda c: on_item(c, "not-a-jwt"), "invalid token"),
    HandshakeCase("three-garbage-parts", lambda c: on_item(c, "abc.def.ghi"), "invalid token"),
    HandshakeCase("invalid-utf8-token", lambda c: on_item(c, "%FF%FE%FD"), "invalid token"),
    HandshakeCase("wrong-key", lambda c: forged(c, key=WRONG_KEY), "invalid token"),
    HandshakeCase(
        "tampered-payload",
        lambda c: on_item(
            c,
            ".".join(
                [
                    c.world.owner.token.split(".")[0],
                    b64json(claims(c.world.owner, sub=c.world.outsider.id)),
                    c.world.owner.token.split(".")[2],
                ]
            ),
        ),
        "invalid token",
    ),
    # The signature is checked before expiry: a forged expired token is invalid, not expired.
    HandshakeCase(
        "wrong-key-and-expired",
        lambda c: forged(c, key=WRONG_KEY, claims={"exp": NOW - HOUR}),
        "invalid token",
    ),
    HandshakeCase("expired", lambda c: forged(c, claims={"exp": NOW - 60}), "token expired"),
    HandshakeCase(
        "iat-in-the-future",
        lambda c: forged(c, claims={"iat": NOW + HOUR, "exp": NOW + 2 * HOUR}),
        "invalid token",
    ),
    HandshakeCase(
        "nbf-in-the-future", lambda c: forged(c, claims={"nbf": NOW + HOUR}), "invalid token"
    ),
    # Algorithms other than the configured HS256.
    HandshakeCase("alg-none", lambda c: forged(c, key=None, alg="none"), "invalid token"),
    HandshakeCase("alg-None", lambda c: forged(c, key=None, alg="None"), "invalid token"),
    HandshakeCase("alg-none-with-a-signature", lambda c: forged(c, alg="none"), "invalid token"),
    HandshakeCase(
        "hs512-with-the-right-key",
        lambda c: forged(c, alg="HS512", digest="HS512"),
        "invalid token",
    ),
    HandshakeCase(
        "hs384-with-the-right-key",
        lambda c: forged(c, alg="HS384", digest="HS384"),
        "invalid token",
    ),
    HandshakeCase("rs256-header-hmac-signature", lambda c: forged(c, alg="RS256"), "invalid token"),
    HandshakeCase("es256-header-hmac-signature", lambda c: forged(c, alg="ES256"), "invalid token"),
    HandshakeCase(
        "rs256-header-random-signature",
        lambda c: on_item(
            c,
            jwt_token(claims(c.world.owner), key=None, alg="RS256") + b64url(os.urandom(256)),
        ),
        "invalid token",
    ),
    HandshakeCase(
        "kid-path-traversal-empty-key",
        lambda c: forged(c, key="", header={"kid": "../../../../dev/null"}),
        "invalid token",
    ),
    HandshakeCase(
        "jku-foreign-key-set",
        lambda c: forged(c, key=WRONG_KEY, header={"jku": "https://evil.example/jwks.json"}),
        "invalid token",
    ),
    # Claims.
    HandshakeCase("typ-refresh", lambda c: forged(c, claims={"typ": "refresh"}), "invalid token"),
    HandshakeCase("typ-missing", lambda c: forged(c, claims={"typ": None}), "invalid token"),
    HandshakeCase("jti-missing", lambda c: forged(c, claims={"jti": None}), "invalid token"),
    HandshakeCase("sid-missing", lambda c: forged(c, claims={"sid": None}), "invalid token"),
    HandshakeCase("sub-not-a-string", lambda c: forged(c, claims={"sub": 1}), "invalid token"),
    HandshakeCase(
        "exp-not-a-number", lambda c: forged(c, claims={"exp": "tomorrow"}), "invalid token"
    ),
    HandshakeCase(
        "unknown-session", lambda c: forged(c, claims={"sid": uuid.uuid4().hex}), "invalid session"
    ),
    HandshakeCase(
        "sql-injection-in-sid",
        lambda c: forged(c, claims={"sid": "' OR '1'='1"}),
        "invalid session",
    ),
    # Oversized tokens. The server refuses anything over 4096 bytes as malformed.
    HandshakeCase(
        "token-5kB-query", lambda c: on_item(c, padded(c.world.owner, 5000)), "invalid token"
    ),
    HandshakeCase(
        "token-10kB-query", lambda c: on_item(c, padded(c.world.owner, 10_000)), "invalid token"
    ),
    HandshakeCase(
        "token-10kB-header",
        lambda c: on_item(c, Authorization=f"Bearer {padded(c.world.owner, 10_000)}"),
        "invalid token",
    ),
    # Other ways to carry a bad token; a bad token is never rescued by a good cookie.
    HandshakeCase(
        "garbage-bearer-header",
        lambda c: on_item(c, Authorization="Bearer not-a-jwt"),
        "invalid token",
    ),
    HandshakeCase(
        "garbage-bearer-subprotocol",
        lambda c: Handshake(f"/items/{c.world.item}/ws", subprotocols=("bearer", "not-a-jwt")),
        "invalid token",
    ),
    HandshakeCase(
        "bad-token-with-a-good-cookie",
        lambda c: Handshake(
            f"/items/{c.world.item}/ws?token=not-a-jwt",
            {"Cookie": f"session={c.world.owner.cookie}", "Origin": c.world.origin},
        ),
        "invalid token",
    ),
    # Tickets.
    HandshakeCase("ticket-reused", reused_ticket, "invalid token"),
    HandshakeCase(
        "ticket-for-another-item",
        lambda c: _ticket_on(c, c.world.other_item, f"/items/{c.world.item}/ws"),
        "invalid token",
    ),
    HandshakeCase(
        "item-ticket-on-monitor",
        lambda c: _ticket_on(c, c.world.item, "/monitor/ws"),
        "invalid token",
    ),
    HandshakeCase(
        "ticket-expired",
        lambda c: forged(c, claims={"typ": "ticket", "exp": NOW - 60}),
        "invalid token",
    ),
    # Cookies: never issued, tampered, from before a logout.
    HandshakeCase(
        "cookie-never-issued",
        lambda c: with_cookie(c, base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")),
        "invalid session",
    ),
    HandshakeCase(
        "cookie-tampered",
        lambda c: with_cookie(
            c, c.world.owner.cookie[:-2] + ("AA" if c.world.owner.cookie[-2:] != "AA" else "BB")
        ),
        "invalid session",
    ),
    HandshakeCase(
        "cookie-sql-injection", lambda c: with_cookie(c, "' OR '1'='1"), "invalid session"
    ),
    HandshakeCase("cookie-5kB", lambda c: with_cookie(c, "c" * 5000), "invalid session"),
    HandshakeCase("cookie-after-logout", logged_out_cookie, "invalid session"),
    HandshakeCase("token-after-logout", logged_out_token, "invalid session"),
    # Cross-origin handshakes with a cookie.
    HandshakeCase(
        "cookie-foreign-origin",
        lambda c: with_cookie(c, c.world.owner.cookie, "https://evil.example"),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-null-origin",
        lambda c: with_cookie(c, c.world.owner.cookie, "null"),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-without-origin",
        lambda c: with_cookie(c, c.world.owner.cookie, None),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-origin-suffix-trick",
        lambda c: with_cookie(c, c.world.owner.cookie, c.world.origin + ".evil.example"),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-origin-https-scheme",
        lambda c: with_cookie(
            c, c.world.owner.cookie, c.world.origin.replace("http://", "https://")
        ),
        "origin not allowed",
    ),
    HandshakeCase(
        "cookie-origin-other-port",
        lambda c: with_cookie(
            c, c.world.owner.cookie, f"http://127.0.0.1:{c.world.server.port + 1}"
        ),
        "origin not allowed",
    ),
    HandshakeCase(
        "forged-cookie-foreign-origin",  # the Origin is checked before the session
        lambda c: with_cookie(c, "forged", "https://evil.example"),
        "origin not allowed",
    ),
    # Items: not a member, not existing, malformed ids.
    HandshakeCase(
        "outsider-token",
        lambda c: Handshake(f"/items/{c.world.item}/ws?token={c.world.outsider.token}"),
        "forbidden",
    ),
    HandshakeCase(
        "outsider-cookie",
        lambda c: Handshake(
            f"/items/{c.world.item}/ws",
            {"Cookie": f"session={c.world.outsider.cookie}", "Origin": c.world.origin},
        ),
        "forbidden",
    ),
    HandshakeCase("nonexistent-item", at_item("no-such-item-0000"), "forbidden"),
    HandshakeCase("item-unicode", at_item("%C3%AFt%C3%A9m-%E2%9C%93"), "forbidden"),
    HandshakeCase("item-invalid-utf8", at_item("%FF%FE"), "forbidden"),
    HandshakeCase("item-sql-injection", at_item("x'%20OR%20'1'%3D'1"), "forbidden"),
    HandshakeCase("item-65-chars", at_item("a" * 65), "forbidden"),
    HandshakeCase("item-dot-dot", at_item(".."), "forbidden"),
    HandshakeCase("item-10kB", at_item("a" * 10_000), "forbidden"),
    HandshakeCase("item-percent-encoded-slash", at_item("a%2Fb"), "forbidden"),
    HandshakeCase("item-percent-encoded-traversal", at_item("..%2F..%2Fadmin"), "forbidden"),
    # since.
    HandshakeCase(
        "since-sql-injection",
        lambda c: Handshake(
            f"/items/{c.world.item}/ws?token={c.world.owner.token}&since=1%20OR%201%3D1"
        ),
        "invalid since",
    ),
    HandshakeCase(
        "since-negative",
        lambda c: Handshake(f"/items/{c.world.item}/ws?token={c.world.owner.token}&since=-1"),
        "invalid since",
    ),
    HandshakeCase(
        "outsider-with-bad-since",  # item access is checked before since
        lambda c: Handshake(f"/items/{c.world.item}/ws?token={c.world.outsider.token}&since=x"),
        "forbidden",
    ),
]


async def _ticket_on(ctx: Ctx, ticket_item: str, path: str) -> Handshake:
    return Handshake(f"{path}?token={await ticket(ctx, ticket_item)}")


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


@pytest.mark.parametrize("case", HANDSHAKES, ids=lambda c: c.id)
async def test_handshake_attack(case: HandshakeCase, ctx: Ctx) -> None:
    hs = await resolve(case.attack(ctx))
    code, reason, subprotocol = await refusal(ctx.world.server, hs)
    assert (code, reason) == (POLICY, case.reason)
    if "bearer" in hs.subprotocols:
        assert subprotocol == "bearer"
    # The attack left the service able to serve the owner.
    await assert_service_works(ctx)


# --------------------------------------------------------------------------------------
# Catalogue 2: REST. Outcome: the exact status, `{"detail": ...}`, the field a 422 names.


NOT_SET: Any = object()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = NOT_SET
    data: dict[str, str] | None = None
    content: bytes | Callable[[], AsyncIterator[bytes]] | None = None


Verify = Callable[[Ctx, httpx.Response], Awaitable[None]]


@dataclass(frozen=True)
class RestCase:
    id: str
    request: Callable[[Ctx], Request | Awaitable[Request]]
    status: int
    loc: tuple[str | int, ...] | None = None  # a 422 names this field
    verify: Verify | None = None  # run when the answer is `status`
    # Only for inputs whose validity the contract leaves to the implementer (a NUL
    # character in free text): this other answer is right too. Never a 5xx.
    also: tuple[int, ...] = ()


def as_owner(ctx: Ctx) -> dict[str, str]:
    return ctx.world.owner.headers


def get(path: Callable[[Ctx], str], who: str = "owner") -> Callable[[Ctx], Request]:
    return lambda c: Request("GET", path(c), getattr(c.world, who).headers)


def bearer(token: Callable[[Ctx], str]) -> Callable[[Ctx], Request]:
    return lambda c: Request("GET", "/auth/me", {"Authorization": f"Bearer {token(c)}"})


def cookie_me(cookie: Callable[[Ctx], str]) -> Callable[[Ctx], Request]:
    return lambda c: Request("GET", "/auth/me", {"Cookie": f"session={cookie(c)}"})


def messages_query(query: str) -> Callable[[Ctx], Request]:
    return lambda c: Request("GET", f"/items/{c.world.item}/messages?{query}", as_owner(c))


def item_path(segment: str) -> Callable[[Ctx], Request]:
    return lambda c: Request("GET", f"/items/{segment}", as_owner(c))


def raw_json(method: str, path: Callable[[Ctx], str], body: bytes) -> Callable[[Ctx], Request]:
    return lambda c: Request(
        method, path(c), {**as_owner(c), "Content-Type": "application/json"}, content=body
    )


def chunked(body: bytes, size: int = 16384) -> Callable[[], AsyncIterator[bytes]]:
    """The body as a stream: no Content-Length, sent with Transfer-Encoding: chunked."""

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start : start + size]

    return stream


def publish_body_of_size(size: int) -> bytes:
    """`{"data":"xxx..."}` of exactly `size` bytes."""
    empty = b'{"data":""}'
    return b'{"data":"' + b"x" * (size - len(empty)) + b'"}'


async def cookie_after_logout(ctx: Ctx) -> Request:
    user = await logged_out(ctx, "cookie")
    return Request("GET", "/auth/me", {"Cookie": f"session={user.cookie}"})


async def token_after_logout(ctx: Ctx) -> Request:
    user = await logged_out(ctx, "token")
    return Request("GET", "/auth/me", user.headers)


async def ticket_as_bearer(ctx: Ctx) -> Request:
    return Request("GET", "/auth/me", {"Authorization": f"Bearer {await ticket(ctx, None)}"})


async def _empty(r: httpx.Response) -> None:
    assert r.json() == []


def created_item_named(name: str) -> Verify:
    async def verify(ctx: Ctx, r: httpx.Response) -> None:
        body = r.json()
        assert body["name"] == name
        again = await ctx.http.get(f"/items/{body['id']}", headers=as_owner(ctx))
        assert again.status_code == 200 and again.json()["name"] == name

    return verify


def stored_data(data: Any) -> Verify:
    async def verify(ctx: Ctx, r: httpx.Response) -> None:
        seq = r.json()["seq"]
        got = await ctx.http.get(
            f"/items/{ctx.world.item}/messages?after={seq - 1}&limit=1", headers=as_owner(ctx)
        )
        assert got.status_code == 200 and [m["data"] for m in got.json()] == [data]

    return verify


def post_item(body: Any) -> Callable[[Ctx], Request]:
    return lambda c: Request("POST", "/items", as_owner(c), json=body)


def register(body: Any) -> Callable[[Ctx], Request]:
    return lambda c: Request("POST", "/auth/register", json=body)


def post_message(body: Any, who: str = "owner") -> Callable[[Ctx], Request]:
    return lambda c: Request(
        "POST", f"/items/{c.world.item}/messages", getattr(c.world, who).headers, json=body
    )


def cookie_post(origin: str, path: str = "/items") -> Callable[[Ctx], Request]:
    return lambda c: Request(
        "POST",
        path,
        {"Cookie": f"session={c.world.owner.cookie}", "Origin": origin},
        json={"name": "csrf"} if path == "/items" else None,
    )


# Nesting levels far beyond any JSON parser's recursion limit, in under 64 kB.
DEEP = 20_000

REQUESTS = [
    # Credentials.
    RestCase("no-credentials", lambda c: Request("GET", "/auth/me"), 401),
    RestCase("bearer-garbage", bearer(lambda c: "not-a-jwt"), 401),
    RestCase(
        "bearer-wrong-key",
        bearer(lambda c: jwt_token(claims(c.world.owner), key=WRONG_KEY)),
        401,
    ),
    RestCase(
        "bearer-alg-none",
        bearer(lambda c: jwt_token(claims(c.world.owner), key=None, alg="none")),
        401,
    ),
    RestCase(
        "bearer-hs512-right-key",
        bearer(lambda c: jwt_token(claims(c.world.owner), alg="HS512", digest="HS512")),
        401,
    ),
    RestCase(
        "bearer-rs256-confusion",
        bearer(lambda c: jwt_token(claims(c.world.owner), alg="RS256")),
        401,
    ),
    RestCase(
        "bearer-expired",
        bearer(lambda c: jwt_token(claims(c.world.owner, exp=NOW - 60))),
        401,
    ),
    RestCase(
        "bearer-iat-in-the-future",
        bearer(lambda c: jwt_token(claims(c.world.owner, iat=NOW + HOUR, exp=NOW + 2 * HOUR))),
        401,
    ),
    RestCase(
        "bearer-nbf-in-the-future",
        bearer(lambda c: jwt_token(claims(c.world.owner, nbf=NOW + HOUR))),
        401,
    ),
    RestCase("bearer-10kB", bearer(lambda c: padded(c.world.owner, 10_000)), 401),
    RestCase("ticket-as-bearer", ticket_as_bearer, 401),
    RestCase("token-after-logout", token_after_logout, 401),
    RestCase("cookie-never-issued", cookie_me(lambda c: "never-issued-" + "x" * 30), 401),
    RestCase("cookie-sql-injection", cookie_me(lambda c: "' OR '1'='1"), 401),
    RestCase("cookie-10kB", cookie_me(lambda c: "c" * 10_000), 401),
    RestCase("cookie-after-logout", cookie_after_logout, 401),
    # Cross-site requests with the cookie (CSRF).
    RestCase("cookie-post-foreign-origin", cookie_post("https://evil.example"), 403),
    RestCase("cookie-post-null-origin", cookie_post("null"), 403),
    RestCase(
        "cookie-ws-ticket-foreign-origin",
        cookie_post("https://evil.example", "/auth/ws-ticket"),
        403,
    ),
    # Not a member; not existing; members beyond their role.
    RestCase("outsider-get-item", get(lambda c: f"/items/{c.world.item}", "outsider"), 404),
    RestCase(
        "outsider-get-messages",
        get(lambda c: f"/items/{c.world.item}/messages", "outsider"),
        404,
    ),
    RestCase(
        "outsider-get-members", get(lambda c: f"/items/{c.world.item}/members", "outsider"), 404
    ),
    RestCase(
        "outsider-get-presence",
        get(lambda c: f"/items/{c.world.item}/presence", "outsider"),
        404,
    ),
    RestCase(
        "outsider-delete-item",
        lambda c: Request("DELETE", f"/items/{c.world.item}", c.world.outsider.headers),
        404,
    ),
    RestCase(
        "outsider-add-self-as-writer",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.outsider.username}",
            c.world.outsider.headers,
            json={"role": "writer"},
        ),
        404,
    ),
    RestCase("outsider-publish", post_message({"data": 1}, "outsider"), 404),
    RestCase("nonexistent-item", item_path("no-such-item-0000"), 404),
    RestCase("item-dot-dot-encoded", item_path("%2E%2E"), 404),
    RestCase(
        "reader-delete-item",
        lambda c: Request("DELETE", f"/items/{c.world.item}", c.world.reader.headers),
        403,
    ),
    RestCase(
        "reader-promotes-self",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.reader.username}",
            c.world.reader.headers,
            json={"role": "writer"},
        ),
        403,
    ),
    RestCase("reader-publish", post_message({"data": 1}, "reader"), 403),
    RestCase(
        "member-unknown-user",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/nobody-{uuid.uuid4().hex[:8]}",
            as_owner(c),
            json={"role": "reader"},
        ),
        404,
    ),
    # Malformed ids in paths: 422 before any access check.
    RestCase("item-unicode", item_path("%C3%AFt%C3%A9m"), 422, ("path", "item_id")),
    RestCase("item-invalid-utf8", item_path("%FF%FE"), 422, ("path", "item_id")),
    RestCase("item-10kB", item_path("a" * 10_000), 422, ("path", "item_id")),
    RestCase("item-65-chars", item_path("a" * 65), 422, ("path", "item_id")),
    RestCase("item-sql-injection", item_path("x'%20OR%20'1'%3D'1"), 422, ("path", "item_id")),
    RestCase("item-semicolon-drop", item_path("x;DROP%20TABLE%20items"), 422, ("path", "item_id")),
    RestCase("item-percent-encoded-slash", item_path("a%2Fb"), 422, ("path", "item_id")),
    RestCase(
        "item-percent-encoded-traversal", item_path("..%2F..%2Fadmin"), 422, ("path", "item_id")
    ),
    RestCase(
        "username-sql-injection",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/x'%20OR%20'1'%3D'1",
            as_owner(c),
            json={"role": "reader"},
        ),
        422,
        ("path", "username"),
    ),
    RestCase(
        "username-too-short-outsider",  # pattern first, even for a non-member caller
        lambda c: Request("DELETE", f"/items/{c.world.item}/members/ab", c.world.outsider.headers),
        422,
        ("path", "username"),
    ),
    # Query values.
    RestCase("after-negative", messages_query("after=-1"), 422, ("query", "after")),
    RestCase("after-not-a-number", messages_query("after=abc"), 422, ("query", "after")),
    RestCase(
        "after-sql-injection", messages_query("after=1%20OR%201%3D1"), 422, ("query", "after")
    ),
    RestCase("after-float", messages_query("after=1.5"), 422, ("query", "after")),
    # `after` is any non-negative integer: however large, nothing comes after it.
    RestCase(
        "after-2-to-the-31",
        messages_query(f"after={2**31}"),
        200,
        verify=lambda c, r: _empty(r),
    ),
    RestCase(
        "after-2-to-the-62",
        messages_query(f"after={2**62}"),
        200,
        verify=lambda c, r: _empty(r),
    ),
    RestCase(
        "after-2-to-the-64", messages_query(f"after={2**64}"), 200, verify=lambda c, r: _empty(r)
    ),
    RestCase("limit-zero", messages_query("limit=0"), 422, ("query", "limit")),
    RestCase("limit-1001", messages_query("limit=1001"), 422, ("query", "limit")),
    RestCase("limit-sql-injection", messages_query("limit=';--"), 422, ("query", "limit")),
    # Bodies: registration and login.
    RestCase(
        "register-username-sql-injection",
        register({"username": "admin'--", "password": PASSWORD}),
        422,
        ("body", "username"),
    ),
    RestCase(
        "register-username-nul",
        register({"username": "ab\x00cd", "password": PASSWORD}),
        422,
        ("body", "username"),
    ),
    RestCase(
        "register-username-10kB",
        register({"username": "u" * 10_000, "password": PASSWORD}),
        422,
        ("body", "username"),
    ),
    RestCase(
        "register-password-7-chars",
        register({"username": unique(), "password": "1234567"}),
        422,
        ("body", "password"),
    ),
    RestCase(
        "register-password-1025-chars",
        register({"username": unique(), "password": "p" * 1025}),
        422,
        ("body", "password"),
    ),
    RestCase(
        "register-extra-field-is-admin",
        register({"username": unique(), "password": PASSWORD, "is_admin": True}),
        422,
        ("body", "is_admin"),
    ),
    RestCase(
        "register-password-sql-injection-is-just-a-password",
        lambda c: Request(
            "POST", "/auth/register", json={"username": unique(), "password": "' OR '1'='1"}
        ),
        201,
    ),
    RestCase(
        "login-username-sql-injection",
        lambda c: Request(
            "POST", "/auth/login", json={"username": "' OR 1=1 --", "password": PASSWORD}
        ),
        422,
        ("body", "username"),
    ),
    RestCase(
        "login-password-sql-injection",
        lambda c: Request(
            "POST",
            "/auth/login",
            json={"username": c.world.outsider.username, "password": "' OR '1'='1' --"},
        ),
        401,
    ),
    RestCase(
        "token-form-username-sql-injection",
        lambda c: Request(
            "POST",
            "/auth/token",
            data={"username": f"' OR '1'='1' -- {uuid.uuid4().hex}", "password": PASSWORD},
        ),
        401,
    ),
    RestCase(
        "token-form-username-nul",
        lambda c: Request(
            "POST",
            "/auth/token",
            data={"username": f"ad\x00min{uuid.uuid4().hex[:6]}", "password": PASSWORD},
        ),
        401,
        also=(422,),
    ),
    RestCase(
        "token-as-json-instead-of-form",
        lambda c: Request(
            "POST", "/auth/token", json={"username": c.world.owner.username, "password": PASSWORD}
        ),
        422,
    ),
    # Bodies: items, members, tickets.
    RestCase("item-name-empty", post_item({"name": ""}), 422, ("body", "name")),
    RestCase("item-name-201-chars", post_item({"name": "n" * 201}), 422, ("body", "name")),
    RestCase("item-name-not-a-string", post_item({"name": {"$gt": ""}}), 422, ("body", "name")),
    RestCase("item-id-traversal", post_item({"name": "n", "id": "../etc"}), 422, ("body", "id")),
    RestCase(
        "item-id-sql-injection",
        post_item({"name": "n", "id": "x' OR '1'='1"}),
        422,
        ("body", "id"),
    ),
    RestCase(
        "item-extra-field-owner",
        post_item({"name": "n", "owner": "someone"}),
        422,
        ("body", "owner"),
    ),
    RestCase(
        "item-name-sql-injection-is-just-a-name",
        post_item({"name": "'); DROP TABLE items; --"}),
        201,
        verify=created_item_named("'); DROP TABLE items; --"),
    ),
    RestCase(
        "item-name-with-nul",  # any string is a name: stored and read back exactly
        post_item({"name": "a\x00b"}),
        201,
        verify=created_item_named("a\x00b"),
        also=(422,),
    ),
    RestCase(
        "item-body-form-encoded",
        lambda c: Request("POST", "/items", as_owner(c), data={"name": "n"}),
        422,
    ),
    RestCase("item-body-invalid-json", raw_json("POST", lambda c: "/items", b'{"name": '), 422),
    RestCase(
        "item-body-deeply-nested",
        raw_json("POST", lambda c: "/items", b'{"name":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        422,
    ),
    RestCase(
        "member-role-owner",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.outsider.username}",
            as_owner(c),
            json={"role": "owner"},
        ),
        422,
        ("body", "role"),
    ),
    RestCase(
        "member-role-sql-injection",
        lambda c: Request(
            "PUT",
            f"/items/{c.world.item}/members/{c.world.outsider.username}",
            as_owner(c),
            json={"role": "writer' OR '1'='1"},
        ),
        422,
        ("body", "role"),
    ),
    RestCase(
        "ticket-item-sql-injection",
        lambda c: Request("POST", "/auth/ws-ticket", as_owner(c), json={"item_id": "' OR '1'='1"}),
        422,
        ("body", "item_id"),
    ),
    # Bodies: messages.
    RestCase(
        "message-data-sql-injection-is-just-data",
        post_message({"data": {"q": "'; DELETE FROM messages; --"}}),
        201,
        verify=stored_data({"q": "'; DELETE FROM messages; --"}),
    ),
    RestCase(
        "message-data-nul-is-just-data",
        post_message({"data": "\x00"}),
        201,
        verify=stored_data("\x00"),
    ),
    RestCase(
        "message-body-invalid-json",
        raw_json("POST", lambda c: f"/items/{c.world.item}/messages", b'{"data": '),
        422,
    ),
    RestCase(
        "message-body-array",
        raw_json("POST", lambda c: f"/items/{c.world.item}/messages", b"[1, 2]"),
        422,
        ("body", "data"),
    ),
    RestCase("message-body-no-data", post_message({"date": 1}), 422, ("body", "data")),
    RestCase(
        "message-data-deeply-nested",
        raw_json(
            "POST",
            lambda c: f"/items/{c.world.item}/messages",
            b'{"data":' + b"[" * DEEP + b"]" * DEEP + b"}",
        ),
        422,
    ),
    # Body sizes.
    RestCase(
        "message-exactly-max-bytes",
        raw_json(
            "POST",
            lambda c: f"/items/{c.world.item}/messages",
            publish_body_of_size(MAX_MESSAGE_BYTES),
        ),
        201,
    ),
    RestCase(
        "message-one-byte-over",
        raw_json(
            "POST",
            lambda c: f"/items/{c.world.item}/messages",
            publish_body_of_size(MAX_MESSAGE_BYTES + 1),
        ),
        413,
    ),
    RestCase(
        "message-one-byte-over-chunked",
        lambda c: Request(
            "POST",
            f"/items/{c.world.item}/messages",
            {**as_owner(c), "Content-Type": "application/json"},
            content=chunked(publish_body_of_size(MAX_MESSAGE_BYTES + 1)),
        ),
        413,
    ),
    RestCase(
        "register-body-2MiB",
        lambda c: Request(
            "POST",
            "/auth/register",
            {"Content-Type": "application/json"},
            content=json.dumps({"username": "u" * 2 * MAX_REQUEST_BYTES, "password": "p"}).encode(),
        ),
        413,
    ),
    RestCase(
        "register-body-2MiB-chunked",
        lambda c: Request(
            "POST",
            "/auth/register",
            {"Content-Type": "application/json"},
            content=chunked(
                json.dumps({"username": "u" * 2 * MAX_REQUEST_BYTES, "password": "p"}).encode()
            ),
        ),
        413,
    ),
    RestCase(
        "item-body-2MiB",
        raw_json(
            "POST", lambda c: "/items", json.dumps({"name": "n" * 2 * MAX_REQUEST_BYTES}).encode()
        ),
        413,
    ),
    RestCase(
        "login-body-2MiB-content-length-only",
        lambda c: Request(
            "POST",
            "/auth/login",
            {"Content-Type": "application/json"},
            content=b" " * (2 * MAX_REQUEST_BYTES),
        ),
        413,
    ),
]


async def send(ctx: Ctx, req: Request) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": req.headers}
    if req.json is not NOT_SET:
        kwargs["json"] = req.json
    if req.data is not None:
        kwargs["data"] = req.data
    if req.content is not None:
        kwargs["content"] = req.content() if callable(req.content) else req.content
    return await ctx.http.request(req.method, req.path, **kwargs)


@pytest.mark.parametrize("case", REQUESTS, ids=lambda c: c.id)
async def test_rest_attack(case: RestCase, ctx: Ctx) -> None:
    req = await resolve(case.request(ctx))
    r = await send(ctx, req)
    assert r.status_code in (case.status, *case.also), r.text[:500]
    body = r.json()
    if r.status_code >= 400:
        assert set(body) == {"detail"}, body
    if r.status_code == 401:
        assert r.headers.get("www-authenticate") == "Bearer"
    if r.status_code == 422:
        assert isinstance(body["detail"], list) and body["detail"], body
        if case.loc is not None:
            locs = [tuple(error["loc"][: len(case.loc)]) for error in body["detail"]]
            assert case.loc in locs, body
    if case.verify is not None and r.status_code == case.status:
        await case.verify(ctx, r)
    await assert_service_works(ctx)


async def assert_service_works(ctx: Ctx) -> None:
    """The owner can still read their items and the item's history: nothing was dropped,
    deleted or locked by the attack."""
    r = await ctx.http.get("/items", headers=as_owner(ctx))
    assert r.status_code == 200, r.text
    assert {ctx.world.item, ctx.world.other_item} <= {i["id"] for i in r.json()}
    r = await ctx.http.get(f"/items/{ctx.world.item}/members", headers=as_owner(ctx))
    assert r.status_code == 200, r.text
    assert {"username": ctx.world.reader.username, "role": "reader"} in r.json()


# --------------------------------------------------------------------------------------
# Catalogue 3: frames on an open channel. Outcome: an error frame (the socket stays
# open), an ack, or a close code.


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
        refresh_with(lambda c: jwt_token(claims(c.world.owner), key=None, alg="none")),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-wrong-key",
        refresh_with(lambda c: jwt_token(claims(c.world.owner), key=WRONG_KEY)),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-expired",
        refresh_with(lambda c: jwt_token(claims(c.world.owner, exp=NOW - 60))),
        Error("bad_request"),
    ),
    FrameCase(
        "refresh-unknown-session",
        refresh_with(lambda c: jwt_token(claims(c.world.owner, sid=uuid.uuid4().hex))),
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


# --------------------------------------------------------------------------------------
# Catalogue 4: frames the client library refuses to send, over a raw socket.


@dataclass(frozen=True)
class RawFrameCase:
    id: str
    frame: bytes  # complete wire bytes of one frame
    close_code: int


def ws_frame(opcode: int, payload: bytes, *, masked: bool = True, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


RAW_FRAMES = [
    # RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection with 1007.
    RawFrameCase("text-invalid-utf8", ws_frame(0x1, b'{"type":"\xff\xfe"}'), 1007),
    RawFrameCase("text-truncated-utf8-sequence", ws_frame(0x1, b'"caf\xc3'), 1007),
    RawFrameCase("text-overlong-utf8", ws_frame(0x1, b'"\xc0\xaf"'), 1007),
    RawFrameCase("text-utf8-surrogate", ws_frame(0x1, b'"\xed\xa0\x80"'), 1007),
    # RFC 6455 §5.1/§5.2: protocol errors close with 1002.
    RawFrameCase("unmasked-client-frame", ws_frame(0x1, b'{"type":"ping"}', masked=False), 1002),
    RawFrameCase("reserved-opcode", ws_frame(0x3, b"x"), 1002),
    RawFrameCase("continuation-without-start", ws_frame(0x0, b"x"), 1002),
    RawFrameCase("fragmented-control-frame", ws_frame(0x9, b"x", fin=False), 1002),
]


class RawSocket:
    """A WebSocket client written byte by byte, to send what real clients refuse to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int, path: str) -> AsyncIterator[RawSocket]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), OPEN_TIMEOUT
        )
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), OPEN_TIMEOUT)
            assert response.startswith(b"HTTP/1.1 101"), response
            yield cls(reader, writer)
        finally:
            writer.close()
            with suppress(TimeoutError, OSError):
                await asyncio.wait_for(writer.wait_closed(), OPEN_TIMEOUT)

    async def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "server frames are never masked"
            return b0 & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), timeout)

    async def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                assert len(payload) >= 2, "close frame without a code"
                return int.from_bytes(payload[:2], "big")


@pytest.mark.parametrize("case", RAW_FRAMES, ids=lambda c: c.id)
async def test_raw_frame_attack(case: RawFrameCase, ctx: Ctx) -> None:
    w = ctx.world
    async with RawSocket.open(w.server.port, f"/items/{w.item}/ws?token={w.owner.token}") as ws:
        opcode, payload = await ws.read_frame()
        assert opcode == 0x1 and json.loads(payload)["type"] == "ready"
        ws.writer.write(case.frame)
        await ws.writer.drain()
        assert await ws.close_code() == case.close_code
    await assert_service_works(ctx)


def test_the_catalogue_is_big_enough() -> None:
    cases = [*HANDSHAKES, *REQUESTS, *FRAMES, *RAW_FRAMES]
    assert len(cases) >= 40
    for catalogue in (HANDSHAKES, REQUESTS, FRAMES, RAW_FRAMES):
        ids = [c.id for c in catalogue]
        assert len(ids) == len(set(ids)), "case ids are unique"


# --------------------------------------------------------------------------------------
# Scenarios.


async def test_session_fixation_a_planted_cookie_is_never_adopted(ctx: Ctx) -> None:
    planted = "attacker-chosen-" + uuid.uuid4().hex
    user = await fresh_login(ctx)
    r = await ctx.http.post(
        "/auth/login",
        json={"username": user.username, "password": PASSWORD},
        headers={"Cookie": f"session={planted}"},
    )
    assert r.status_code == 200, r.text
    issued = r.cookies["session"]
    ctx.http.cookies.clear()
    assert issued != planted
    r = await ctx.http.get("/auth/me", headers={"Cookie": f"session={planted}"})
    assert r.status_code == 401
    code, reason, _ = await refusal(ctx.world.server, with_cookie(ctx, planted))
    assert (code, reason) == (POLICY, "invalid session")
    # The issued cookie works; after logout it is worthless too, everywhere.
    r = await ctx.http.get("/auth/me", headers={"Cookie": f"session={issued}"})
    assert r.status_code == 200 and r.json()["username"] == user.username
    r = await ctx.http.post("/auth/logout", headers={"Cookie": f"session={issued}"})
    assert r.status_code == 204
    ctx.http.cookies.clear()
    r = await ctx.http.get("/auth/me", headers={"Cookie": f"session={issued}"})
    assert r.status_code == 401
    r = await ctx.http.post("/auth/refresh", headers={"Cookie": f"session={issued}"})
    assert r.status_code == 401
    r = await ctx.http.post("/auth/ws-ticket", headers={"Cookie": f"session={issued}"})
    assert r.status_code == 401


async def test_sql_injection_in_every_field_leaves_the_database_working(ctx: Ctx) -> None:
    api = ctx.api
    owner = await fresh_login(ctx)
    item = await api.item(owner)
    for n, payload in enumerate(SQL_INJECTIONS):
        quoted = urllib.parse.quote(payload, safe="")
        # Usernames and passwords.
        r = await ctx.http.post("/auth/register", json={"username": payload, "password": PASSWORD})
        assert r.status_code == 422, (payload, r.text)
        r = await ctx.http.post("/auth/login", json={"username": payload, "password": PASSWORD})
        assert r.status_code == 422, (payload, r.text)
        r = await ctx.http.post(
            "/auth/token", data={"username": f"{payload} {uuid.uuid4().hex}", "password": payload}
        )
        assert r.status_code == 401, (payload, r.text)
        if len(payload) >= 8:
            r = await ctx.http.post(
                "/auth/login", json={"username": owner.username, "password": payload}
            )
            assert r.status_code == 401, (payload, r.text)
            # The real password still works (and resets the failed-login throttle).
            r = await ctx.http.post(
                "/auth/login", json={"username": owner.username, "password": PASSWORD}
            )
            assert r.status_code == 200, (payload, r.text)
            ctx.http.cookies.clear()
        # Item names are free text: stored and read back exactly.
        r = await ctx.http.post("/items", json={"name": payload}, headers=owner.headers)
        assert r.status_code == 201, (payload, r.text)
        assert r.json()["name"] == payload
        # Ids (body and path), usernames in paths, query values.
        r = await ctx.http.post("/items", json={"name": "n", "id": payload}, headers=owner.headers)
        assert r.status_code == 422, (payload, r.text)
        r = await ctx.http.get(f"/items/{quoted}", headers=owner.headers)
        assert r.status_code == 422, (payload, r.text)
        r = await ctx.http.put(
            f"/items/{item}/members/{quoted}", json={"role": "reader"}, headers=owner.headers
        )
        assert r.status_code == 422, (payload, r.text)
        for name in ("after", "limit"):
            r = await ctx.http.get(
                f"/items/{item}/messages", params={name: payload}, headers=owner.headers
            )
            assert r.status_code == 422, (payload, r.text)
        r = await ctx.http.put(
            f"/items/{item}/members/{owner.username}", json={"role": payload}, headers=owner.headers
        )
        assert r.status_code == 422, (payload, r.text)
        r = await ctx.http.post("/auth/ws-ticket", json={"item_id": payload}, headers=owner.headers)
        assert r.status_code == 422, (payload, r.text)
        # Message data is any JSON: stored and read back exactly.
        r = await ctx.http.post(
            f"/items/{item}/messages", json={"data": {payload: [payload]}}, headers=owner.headers
        )
        assert r.status_code == 201, (payload, r.text)
        assert r.json()["seq"] == n + 1 and r.json()["data"] == {payload: [payload]}

    # Afterwards the database works end to end: a new account, its login, an item,
    # sharing, publishing and the full history.
    fresh = await api.user()
    other_item = await api.item(fresh, item_id=unique("after-sqli-"))
    await api.share(fresh, other_item, owner, "writer")
    await api.post(owner, other_item, {"still": "works"})
    r = await ctx.http.get(f"/items/{item}/messages?limit=1000", headers=owner.headers)
    assert r.status_code == 200
    assert [m["data"] for m in r.json()] == [{p: [p]} for p in SQL_INJECTIONS]
    r = await ctx.http.get(f"/items/{other_item}/messages", headers=fresh.headers)
    assert [m["data"] for m in r.json()] == [{"still": "works"}]
    r = await ctx.http.get("/items", headers=owner.headers)
    names = {i["name"] for i in r.json()}
    assert set(SQL_INJECTIONS) <= names
    await assert_service_works(ctx)


async def test_publish_flood_is_refused_beyond_the_burst_and_others_are_unaffected(
    make_server: MakeServer,
) -> None:
    # Rate 0.05/s: the bucket cannot refill within the test, so exactly `burst` are acked.
    with make_server(ws_publish_rate=0.05, ws_publish_burst=5) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            flooder, bystander = await api.user(), await api.user()
            item = await api.item(flooder)
            await api.share(flooder, item, bystander, "writer")
            flood = await _ready(srv, item, flooder)
            calm = await _ready(srv, item, bystander)
            async with flood, calm:
                for n in range(40):
                    await flood.send(json.dumps({"type": "publish", "data": n, "ref": f"f{n}"}))
                acks, refused = [], []
                while len(acks) + len(refused) < 40:
                    frame = await recv(flood)
                    if frame["type"] == "ack":
                        acks.append(frame["ref"])
                    elif frame["type"] == "error":
                        assert frame["code"] == "rate_limited", frame
                        refused.append(frame["ref"])
                assert acks == [f"f{n}" for n in range(5)]
                assert refused == [f"f{n}" for n in range(5, 40)]
                # The flooder's socket stays open.
                await flood.send('{"type":"ping"}')
                assert (await read_until(flood, "pong"))[-1] == {"type": "pong"}
                # Another user's bucket is untouched, and sees exactly the accepted ones.
                await calm.send(json.dumps({"type": "publish", "data": "calm", "ref": "c"}))
                ack = (await read_until(calm, "ack"))[-1]
                assert ack == {"type": "ack", "ref": "c", "seq": 6}
                r = await http.get(f"/items/{item}/messages", headers=bystander.headers)
                assert [m["data"] for m in r.json()] == [0, 1, 2, 3, 4, "calm"]


async def _ready(srv: LiveServer, item: str, user: User) -> ClientConnection:
    ws = await connect(
        f"{srv.ws_url}/items/{item}/ws?token={user.token}", open_timeout=OPEN_TIMEOUT
    )
    try:
        assert (await recv(ws))["type"] == "ready"
    except BaseException:
        await ws.close()
        raise
    return ws


def _metric(text_body: str, name: str) -> float:
    for line in text_body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _publish_until_a_queue_overflows(http: httpx.AsyncClient, item: str, owner: User) -> int:
    """Publish 32 kB messages until a socket's queue overflows (the silent socket's kernel
    buffers fill first); a bounded number of rounds. The number published."""
    overflows_before = _metric((await http.get("/metrics")).text, OVERFLOWS)
    published = 0
    for _ in range(20):
        for _ in range(50):
            r = await http.post(
                f"/items/{item}/messages", json={"data": "z" * 32_000}, headers=owner.headers
            )
            assert r.status_code == 201, r.text
            published += 1
        if _metric((await http.get("/metrics")).text, OVERFLOWS) > overflows_before:
            return published
    raise AssertionError("the silent socket's queue never overflowed")


OVERFLOWS = "item_channels_queue_overflows_total"


@asynccontextmanager
async def silent_reader(
    make_server: MakeServer,
) -> AsyncIterator[tuple[httpx.AsyncClient, User, User, str, ClientConnection, list[Any]]]:
    """A server with small socket queues, an owner watching their item, and a reader
    whose socket completed the handshake and then never reads again."""
    with make_server(ws_queue_size=64) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            owner, silent = await api.user(), await api.user()
            item = await api.item(owner)
            await api.share(owner, item, silent, "reader")
            watcher = await _ready(srv, item, owner)
            frames: list[dict[str, Any]] = []

            async def watch() -> None:
                while True:
                    frames.append(await recv(watcher, 60))

            async with watcher:
                stalled = _never_reading_socket(srv.port, f"/items/{item}/ws?token={silent.token}")
                task = asyncio.create_task(watch())
                try:
                    yield http, owner, silent, item, watcher, frames
                finally:
                    task.cancel()
                    with suppress(asyncio.CancelledError, ConnectionClosed, TimeoutError):
                        await task
                    stalled.close()


async def test_a_client_that_never_reads_does_not_hold_up_the_others(
    make_server: MakeServer,
) -> None:
    async with silent_reader(make_server) as (http, owner, _, item, _, frames):
        published = await _publish_until_a_queue_overflows(http, item, owner)
        # The watcher gets every message, in order, without a gap.
        deadline = asyncio.get_running_loop().time() + 30
        while len([f for f in frames if f["type"] == "message"]) < published:
            assert asyncio.get_running_loop().time() < deadline, "the watcher fell behind"
            await asyncio.sleep(0.05)
        seqs = [f["seq"] for f in frames if f["type"] == "message"]
        assert seqs == list(range(1, published + 1))
        # And the watcher's socket is still live.
        r = await http.get(f"/items/{item}/presence", headers=owner.headers)
        assert owner.username in r.json()["users"]


async def test_a_client_that_never_reads_is_let_go_once_its_queue_overflows(
    make_server: MakeServer,
) -> None:
    """protocol.md: when the queue is full, the socket "is closed with 1013 slow
    consumer". A peer that reads nothing cannot receive that close frame, so the
    server must drop the connection after a grace period (the server's CLOSE_GRACE is
    5 s); then the user leaves presence like any user whose last socket closed."""
    async with silent_reader(make_server) as (http, owner, silent, item, _, frames):
        await _publish_until_a_queue_overflows(http, item, owner)
        left = {"type": "presence", "event": "leave", "user": silent.username, "count": 1}
        deadline = asyncio.get_running_loop().time() + 20
        while left not in frames:
            assert asyncio.get_running_loop().time() < deadline, (
                "the overflowed socket is still open (and its user still present) 20 s later"
            )
            await asyncio.sleep(0.1)
        r = await http.get(f"/items/{item}/presence", headers=owner.headers)
        assert r.json() == {"count": 1, "users": [owner.username]}


def _never_reading_socket(port: int, path: str) -> socket.socket:
    """Completes the handshake, then never reads again (a tiny receive buffer, so the
    server's sends back up quickly)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(OPEN_TIMEOUT)
    try:
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(1)
            assert chunk, "closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
    except BaseException:
        sock.close()
        raise
    return sock
