"""Catalogue 2's machinery: REST calls described as data, sent, and their answer checked:
the exact status, `{"detail": ...}`, the field a 422 names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.adversarial.world import (
    Ctx,
    as_owner,
    assert_service_works,
    logged_out,
    resolve,
    ticket,
)

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


async def empty(r: httpx.Response) -> None:
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


async def send(ctx: Ctx, req: Request) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": req.headers}
    if req.json is not NOT_SET:
        kwargs["json"] = req.json
    if req.data is not None:
        kwargs["data"] = req.data
    if req.content is not None:
        kwargs["content"] = req.content() if callable(req.content) else req.content
    return await ctx.http.request(req.method, req.path, **kwargs)


async def answered_as_expected(case: RestCase, ctx: Ctx) -> None:
    """Send the case's request: the answer is the case's, and the service still works."""
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
