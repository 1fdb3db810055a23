"""Open sockets close when their credential or their access goes away."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from websockets.asyncio.client import ClientConnection

from tests.servers import LiveServer
from tests.support import (
    Api,
    User,
    channel_url,
    closed,
    cookie_headers,
    error_frame,
    login,
    logout,
    message_frame,
    of_type,
    ping_barrier,
    presence_frame,
    publish,
    read_until,
    ready,
    ready_frame,
    ready_via,
    refreshed,
    reject,
    sleep_until,
    started,
)
from tests.tokens import access_claims, claims_of, sign

MakeServer = Callable[..., AbstractContextManager[LiveServer]]
SESSION_REVOKED = (1008, "session revoked")
FORBIDDEN = (1008, "forbidden")
TOKEN_EXPIRED = (1008, "token expired")


async def still_open(ws: ClientConnection) -> None:
    """A ping is answered: no close and no error came first."""
    assert of_type(await ping_barrier(ws), "error") == []


async def close_all(*sockets: ClientConnection | None) -> None:
    for ws in sockets:
        if ws is not None:
            await ws.close()


async def by_cookie(api: Api, item: str, cookie: str) -> ClientConnection:
    ws, _ = await ready_via(
        api.server, item, additional_headers=cookie_headers(cookie), origin=api.server.base_url
    )
    return ws


async def ticket(api: Api, token: str, item: str) -> str:
    r = await api.http.post(
        "/auth/ws-ticket", json={"item_id": item}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


# Logout.


async def test_logout_closes_the_sessions_sockets_only(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    other_item = await api.item(alice)
    token_b, cookie_b = await login(api, alice)
    sockets: list[ClientConnection] = []
    try:
        session_a = [
            (await ready(api.server, item, alice.token))[0],
            (await ready(api.server, other_item, alice.token))[0],
            await by_cookie(api, item, alice.cookie),
            (await ready_via(api.server, item, additional_headers=alice.headers))[0],
            (await ready(api.server, item, await ticket(api, alice.token, item)))[0],
        ]
        sockets += session_a
        session_b = [
            (await ready(api.server, item, token_b))[0],
            await by_cookie(api, item, cookie_b),
        ]
        sockets += session_b
        await logout(api, alice.token)
        for ws in session_a:
            assert await closed(ws) == SESSION_REVOKED
        for ws in session_b:
            await still_open(ws)
        # Logging out with the cookie (no Origin: a non-browser client) closes session B's.
        r = await api.http.post("/auth/logout", headers=cookie_headers(cookie_b))
        assert r.status_code == 204, r.text
        for ws in session_b:
            assert await closed(ws) == SESSION_REVOKED
    finally:
        await close_all(*sockets)
        api.http.cookies.clear()


async def test_logout_of_another_user_closes_nothing(api: Api) -> None:
    alice = await api.user()
    bob = await api.user()
    item = await api.item(alice)
    await api.share(alice, item, bob, "reader")
    ws, _ = await ready(api.server, item, alice.token)
    async with ws:
        await logout(api, bob.token)
        await still_open(ws)


# Membership and deletion.


async def test_removing_a_member_closes_their_sockets_on_the_item(api: Api) -> None:
    alice = await api.user()
    bob = await api.user()
    carol = await api.user()
    item = await api.item(alice)
    other_item = await api.item(alice)
    for it in (item, other_item):
        await api.share(alice, it, bob, "writer")
    await api.share(alice, item, carol, "reader")
    sockets: list[ClientConnection] = []
    try:
        bobs = [
            (await ready(api.server, item, bob.token))[0],
            await by_cookie(api, item, bob.cookie),
        ]
        bob_elsewhere, _ = await ready(api.server, other_item, bob.token)
        keep = [
            (await ready(api.server, item, alice.token))[0],
            (await ready(api.server, item, carol.token))[0],
        ]
        sockets += [*bobs, bob_elsewhere, *keep]
        r = await api.http.delete(f"/items/{item}/members/{bob.username}", headers=alice.headers)
        assert r.status_code == 204, r.text
        for ws in bobs:
            assert await closed(ws) == FORBIDDEN
        # The others see bob leave, and carry on.
        for ws in keep:
            frames = await read_until(ws, lambda f: f.get("event") == "leave")
            assert frames[-1] == presence_frame("leave", bob.username, 2)
        for ws in [bob_elsewhere, *keep]:
            await still_open(ws)
        url = channel_url(api.server, item, token=bob.token)
        assert await reject(url) == (*FORBIDDEN, None)
    finally:
        await close_all(*sockets)


async def test_deleting_the_item_closes_every_socket_on_it(api: Api) -> None:
    alice = await api.user()
    bob = await api.user()
    item = await api.item(alice)
    other_item = await api.item(alice)
    await api.share(alice, item, bob, "reader")
    sockets: list[ClientConnection] = []
    try:
        on_item = [
            (await ready(api.server, item, alice.token))[0],
            (await ready(api.server, item, alice.token, query={"since": "0"}))[0],
            await by_cookie(api, item, alice.cookie),
            (await ready(api.server, item, bob.token))[0],
        ]
        elsewhere, _ = await ready(api.server, other_item, alice.token)
        sockets += [*on_item, elsewhere]
        r = await api.http.delete(f"/items/{item}", headers=alice.headers)
        assert r.status_code == 204, r.text
        for ws in on_item:
            assert await closed(ws) == FORBIDDEN
        await still_open(elsewhere)
        url = channel_url(api.server, item, token=alice.token)
        assert await reject(url) == (*FORBIDDEN, None)
    finally:
        await close_all(*sockets)


async def test_a_member_cannot_delete_the_item(api: Api) -> None:
    alice = await api.user()
    bob = await api.user()
    item = await api.item(alice)
    await api.share(alice, item, bob, "writer")
    ws, _ = await ready(api.server, item, bob.token)
    async with ws:
        r = await api.http.delete(f"/items/{item}", headers=bob.headers)
        assert r.status_code == 403, r.text
        await still_open(ws)


# Expiry.


async def test_session_expiry_closes_sockets(make_server: MakeServer) -> None:
    async with started(make_server, session_ttl=4) as api:
        alice = await api.user()
        item = await api.item(alice)
        by_token, _ = await ready(api.server, item, alice.token)
        cookie_socket = await by_cookie(api, item, alice.cookie)
        try:
            assert await closed(by_token, timeout=15) == SESSION_REVOKED
            assert await closed(cookie_socket, timeout=15) == SESSION_REVOKED
        finally:
            await close_all(by_token, cookie_socket)
        url = channel_url(api.server, item, token=alice.token)
        assert await reject(url) == (1008, "invalid session", None)


async def test_access_token_expiry_closes_token_sockets(make_server: MakeServer) -> None:
    async with started(make_server, access_token_ttl=4) as api:
        alice = await api.user()
        item = await api.item(alice)
        exp = claims_of(alice.token)["exp"]
        in_query, _ = await ready(api.server, item, alice.token)
        in_header, _ = await ready_via(api.server, item, additional_headers=alice.headers)
        in_subprotocol, _ = await ready_via(api.server, item, subprotocols=["bearer", alice.token])
        cookie_socket = await by_cookie(api, item, alice.cookie)
        try:
            for ws in (in_query, in_header, in_subprotocol):
                assert await closed(ws, timeout=15) == TOKEN_EXPIRED
            # A cookie socket has no token to expire.
            await sleep_until(exp + 0.5)
            await still_open(cookie_socket)
        finally:
            await close_all(in_query, in_header, in_subprotocol, cookie_socket)
        url = channel_url(api.server, item, token=alice.token)
        assert await reject(url) == (*TOKEN_EXPIRED, None)


async def test_ticket_socket_outlives_the_ticket(make_server: MakeServer) -> None:
    async with started(make_server, ws_ticket_ttl=3) as api:
        alice = await api.user()
        item = await api.item(alice)
        once = await ticket(api, alice.token, item)
        exp = claims_of(once)["exp"]
        ws, _ = await ready(api.server, item, once)
        async with ws:
            await sleep_until(exp + 1)
            await still_open(ws)


# Refresh.


async def test_refresh_keeps_the_socket_open_past_the_first_exp(make_server: MakeServer) -> None:
    async with started(make_server, access_token_ttl=4) as api:
        alice = await api.user()
        item = await api.item(alice)
        first = claims_of(alice.token)
        ws, _ = await ready(api.server, item, alice.token)
        async with ws:
            # A token issued two seconds later expires two seconds later.
            await sleep_until(first["iat"] + 2.05)
            fresh = await refreshed(api, alice.token)
            assert claims_of(fresh)["exp"] > first["exp"]
            await ws.send(json.dumps({"type": "refresh", "token": fresh}))
            # A refresh is not answered.
            assert of_type(await ping_barrier(ws), "error", "ack") == []
            await sleep_until(first["exp"] + 0.3)
            await still_open(ws)
            await publish(ws, "still here", ref="r")
            frames = await read_until(ws, lambda f: f["type"] == "message")
            assert frames[-1] == message_frame(item, 1, alice.username, "still here")
            # The new token expires in turn.
            assert await closed(ws, timeout=15) == TOKEN_EXPIRED


async def test_refresh_with_another_users_token_changes_nothing(
    make_server: MakeServer,
) -> None:
    async with started(make_server, access_token_ttl=5) as api:
        alice = await api.user()
        item = await api.item(alice)
        first = claims_of(alice.token)
        ws, _ = await ready(api.server, item, alice.token)
        async with ws:
            await sleep_until(first["iat"] + 1.05)
            bob = await api.user()
            assert claims_of(bob.token)["exp"] > first["exp"]
            await ws.send(json.dumps({"type": "refresh", "token": bob.token}))
            frames = await read_until(ws, lambda f: f["type"] == "error")
            assert frames[-1] == error_frame("forbidden")
            # Bob's session does not govern the socket: his logout leaves it open.
            await logout(api, bob.token)
            await still_open(ws)
            # Still alice's token, expiring at its own exp.
            assert await closed(ws, timeout=15) == TOKEN_EXPIRED


async def test_refresh_with_another_users_token_is_forbidden(api: Api) -> None:
    alice = await api.user()
    bob = await api.user()
    item = await api.item(alice)
    await api.share(alice, item, bob, "writer")
    ws, _ = await ready(api.server, item, alice.token)
    async with ws:
        await ws.send(json.dumps({"type": "refresh", "token": bob.token}))
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert frames[-1] == error_frame("forbidden")
        await still_open(ws)
        # Still alice.
        await publish(ws, "mine")
        frames = await read_until(ws, lambda f: f["type"] == "message")
        assert frames[-1] == message_frame(item, 1, alice.username, "mine")
        # Bob's logout does not touch alice's socket; alice's does.
        await logout(api, bob.token)
        await still_open(ws)
        await logout(api, alice.token)
        assert await closed(ws) == SESSION_REVOKED


def _expired(user: User) -> str:
    now = int(time.time())
    return sign(access_claims(user, iat=now - 60, exp=now - 30))


BAD_REFRESH_TOKENS: dict[str, Callable[[User], str]] = {
    "garbage": lambda u: "garbage",
    "empty": lambda u: "",
    "bad-signature": lambda u: sign(
        access_claims(u), key="another-secret-key-that-is-long-enough-9876543210"
    ),
    "expired": _expired,
    "wrong-typ": lambda u: sign(access_claims(u, typ="refresh")),
}


@pytest.mark.parametrize("make_token", BAD_REFRESH_TOKENS.values(), ids=BAD_REFRESH_TOKENS.keys())
async def test_refresh_with_an_invalid_token_is_a_bad_request(
    api: Api, make_token: Callable[[User], str]
) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, _ = await ready(api.server, item, alice.token)
    async with ws:
        await ws.send(json.dumps({"type": "refresh", "token": make_token(alice)}))
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert frames[-1] == error_frame("bad_request")
        await still_open(ws)


async def test_refresh_with_a_ticket_is_a_bad_request(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, _ = await ready(api.server, item, alice.token)
    async with ws:
        await ws.send(
            json.dumps({"type": "refresh", "token": await ticket(api, alice.token, item)})
        )
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert frames[-1] == error_frame("bad_request")
        await still_open(ws)


async def test_refresh_with_a_token_of_a_revoked_session_is_a_bad_request(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    old_token, _ = await login(api, alice)
    await logout(api, old_token)
    ws, _ = await ready(api.server, item, alice.token)
    async with ws:
        await ws.send(json.dumps({"type": "refresh", "token": old_token}))
        frames = await read_until(ws, lambda f: f["type"] == "error")
        assert frames[-1] == error_frame("bad_request")
        await still_open(ws)
        # Its own session still governs it.
        await logout(api, alice.token)
        assert await closed(ws) == SESSION_REVOKED


async def test_refreshed_session_governs_the_socket(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    token_b, _ = await login(api, alice)
    ws, hello = await ready(api.server, item, alice.token)
    async with ws:
        assert hello == ready_frame(item, alice, "owner", 0)
        await ws.send(json.dumps({"type": "refresh", "token": token_b}))
        assert of_type(await ping_barrier(ws), "error") == []
        # The socket now belongs to session B: logging out A leaves it open...
        await logout(api, alice.token)
        await still_open(ws)
        # ...and logging out B closes it.
        await logout(api, token_b)
        assert await closed(ws) == SESSION_REVOKED
