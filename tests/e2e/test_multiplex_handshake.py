"""`WS /ws` credentials (CONTRACT §4b): exactly the item channel's checks, reasons and
order, without an item; and the same lifecycle once open."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.e2e.multiplexed import open_ws, ready_frame, send, subscribe, subscribed_frame, ws_url
from tests.support import (
    Api,
    User,
    closed,
    cookie_headers,
    error_frame,
    login,
    logout,
    ping_barrier,
    read_until,
    refreshed,
    reject,
    sleep_until,
    started,
)
from tests.tokens import access_claims, sign, unsigned

POLICY = 1008
OTHER_KEY = "another-secret-key-that-is-long-enough-9876543210"


def url(api: Api, **query: str) -> str:
    return ws_url(api.server.ws_url, **query)


async def ticket(api: Api, user: User, item_id: str | None = None) -> str:
    body = {"item_id": item_id} if item_id is not None else None
    r = await api.http.post("/auth/ws-ticket", json=body, headers=user.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


# Accepted credentials.


async def test_every_way_of_presenting_a_credential_is_accepted(api: Api) -> None:
    alice = await api.user()
    ways = {
        "query": {"query": {"token": alice.token}},
        "header": {"additional_headers": alice.headers},
        "subprotocol": {"subprotocols": ["bearer", alice.token]},
        "cookie": {
            "additional_headers": cookie_headers(alice.cookie),
            "origin": api.server.base_url,
        },
        "ticket": {"query": {"token": await ticket(api, alice)}},
    }
    for name, kwargs in ways.items():
        ws, hello = await open_ws(api.server, **kwargs)  # type: ignore[arg-type]
        async with ws:
            assert hello == ready_frame(alice), name
            if name == "subprotocol":
                assert ws.subprotocol == "bearer"


# Refusals: the item channel's, in its order; never `forbidden` nor `invalid since`.


def _bad_signature(user: User) -> str:
    return sign(access_claims(user), key=OTHER_KEY)


def _alg_none(user: User) -> str:
    return unsigned(access_claims(user))


def _wrong_type(user: User) -> str:
    return sign(access_claims(user, typ="refresh"))


def _missing_sid(user: User) -> str:
    return sign(access_claims(user, sid=None))


def _expired(user: User) -> str:
    now = int(time.time())
    return sign(access_claims(user, iat=now - 100, exp=now - 50))


def _expired_and_bad_signature(user: User) -> str:
    now = int(time.time())
    return sign(access_claims(user, iat=now - 100, exp=now - 50), key=OTHER_KEY)


def _unknown_session(user: User) -> str:
    return sign(access_claims(user, sid="no-such-session"))


TOKENS: dict[str, tuple[Callable[[User], str], str]] = {
    "garbage": (lambda user: "not-a-jwt", "invalid token"),
    "bad-signature": (_bad_signature, "invalid token"),
    "alg-none": (_alg_none, "invalid token"),
    "wrong-typ": (_wrong_type, "invalid token"),
    "missing-sid": (_missing_sid, "invalid token"),
    "expired": (_expired, "token expired"),
    "signature-before-expiry": (_expired_and_bad_signature, "invalid token"),
    "unknown-session": (_unknown_session, "invalid session"),
}


@pytest.mark.parametrize("make_token,reason", TOKENS.values(), ids=TOKENS.keys())
@pytest.mark.parametrize("via", ["query", "header", "subprotocol"])
async def test_refused_tokens(
    api: Api, make_token: Callable[[User], str], reason: str, via: str
) -> None:
    user = await api.user()
    token = make_token(user)
    if via == "query":
        result = await reject(url(api, token=token))
        assert result == (POLICY, reason, None)
    elif via == "header":
        headers = {"Authorization": f"Bearer {token}"}
        assert await reject(url(api), additional_headers=headers) == (POLICY, reason, None)
    else:
        result = await reject(url(api), subprotocols=["bearer", token])
        assert result == (POLICY, reason, "bearer")  # echoed, or browsers never see 1008


async def test_no_credentials(api: Api) -> None:
    assert await reject(url(api)) == (POLICY, "missing credentials", None)


async def test_a_logged_out_sessions_token_and_cookie(api: Api) -> None:
    user = await api.user()
    await logout(api, user.token)
    assert await reject(url(api, token=user.token)) == (POLICY, "invalid session", None)
    result = await reject(
        url(api), additional_headers=cookie_headers(user.cookie), origin=api.server.base_url
    )
    assert result == (POLICY, "invalid session", None)


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null"])
async def test_cookie_needs_an_allowed_origin(api: Api, origin: str | None) -> None:
    user = await api.user()
    kwargs = {"origin": origin} if origin is not None else {}
    result = await reject(url(api), additional_headers=cookie_headers(user.cookie), **kwargs)  # type: ignore[arg-type]
    assert result == (POLICY, "origin not allowed", None)


async def test_origin_is_checked_before_the_cookie_session(api: Api) -> None:
    result = await reject(
        url(api), additional_headers=cookie_headers("garbage"), origin="http://evil.example"
    )
    assert result == (POLICY, "origin not allowed", None)


async def test_an_item_limited_ticket_is_an_invalid_token_and_is_consumed(api: Api) -> None:
    user = await api.user()
    item = await api.item(user)
    limited = await ticket(api, user, item)
    assert await reject(url(api, token=limited)) == (POLICY, "invalid token", None)
    # Consumed by that presentation: not even its own item takes it now.
    result = await reject(f"{api.server.ws_url}/items/{item}/ws?token={limited}")
    assert result == (POLICY, "invalid token", None)


async def test_a_ticket_opens_once(api: Api) -> None:
    user = await api.user()
    once = await ticket(api, user)
    ws, _ = await open_ws(api.server, once)
    await ws.close()
    assert await reject(url(api, token=once)) == (POLICY, "invalid token", None)


async def test_no_item_check_at_the_handshake(api: Api) -> None:
    """`since` and item parameters mean nothing to `/ws`: no `invalid since`, no `forbidden`."""
    user = await api.user()
    ws, hello = await open_ws(api.server, user.token, query={"since": "x", "item_id": "nope!"})
    async with ws:
        assert hello == ready_frame(user)


# While open.


async def test_logout_closes_the_socket_with_its_subscriptions(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    other_token, _ = await login(api, alice)
    ws, _ = await open_ws(api.server, alice.token)
    other, _ = await open_ws(api.server, other_token)
    async with ws, other:
        assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)
        await logout(api, alice.token)
        assert await closed(ws) == (POLICY, "session revoked")
        assert await ping_barrier(other) == []  # another session's socket stays


async def test_token_expiry_closes_and_refresh_extends(make_server: object) -> None:
    async with started(make_server, access_token_ttl=4) as api:  # type: ignore[arg-type]
        issued = time.time()
        user = await api.user()
        item = await api.item(user)
        ws, _ = await open_ws(api.server, user.token)
        async with ws:
            assert await subscribe(ws, item) == subscribed_frame(item, "owner", 0)
            # A fresh token issued 2 s later expires 2 s after the first one.
            await sleep_until(issued + 2)
            fresh = await refreshed(api, user.token)
            await send(ws, "refresh", token=fresh)
            stranger = await api.user()
            await send(ws, "refresh", token=stranger.token)
            await send(ws, "refresh", token="garbage")
            frames = await read_until(ws, lambda f: f.get("code") == "bad_request")
            errors = [f for f in frames if f["type"] == "error"]
            assert errors == [error_frame("forbidden"), error_frame("bad_request")]
            # Past the first token's exp: still open, on the refreshed one.
            await sleep_until(issued + 4.5)
            assert await ping_barrier(ws) == []
            assert await closed(ws, timeout=10) == (POLICY, "token expired")
