"""Adversarial scenarios: session fixation, SQL injection through every field followed by
a full round trip through the database, a publish flood on a rate-limited server, and a
client that never reads."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.adversarial.world import (
    OPEN_TIMEOUT,
    POLICY,
    SQL_INJECTIONS,
    Ctx,
    MakeServer,
    assert_service_works,
    fresh_login,
    refusal,
    with_cookie,
)
from tests.rawsocket import silent_socket
from tests.servers import LiveServer
from tests.support import PASSWORD, Api, User, read_until, recv, unique


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
    return silent_socket(port, path, timeout=OPEN_TIMEOUT, rcvbuf=4096)
