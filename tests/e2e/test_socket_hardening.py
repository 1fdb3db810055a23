"""Sockets against abuse and surprises: revocations that do not outlive a new grant,
monitor sockets under the per-user cap, refreshes rate-limited, presence churn
coalesced, a monitor's disconnect that is no error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.servers import LiveServer
from tests.support import Api, User, closed, read_until, ready, recv

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


@asynccontextmanager
async def api_for(srv: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
        yield Api(srv, http)


def monitor_url(srv: LiveServer, user: User, interval: str = "0.2") -> str:
    return f"{srv.ws_url}/monitor/ws?token={user.token}&interval={interval}"


# A revocation reaches the sockets checked before it, not those of a later grant.


async def test_a_member_added_back_is_not_locked_out(api: Api) -> None:
    alice, bob = await api.user(), await api.user()
    item = await api.item(alice)
    await api.share(alice, item, bob, "writer")
    ws, _ = await ready(api.server, item, bob.token)
    r = await api.http.delete(f"/items/{item}/members/{bob.username}", headers=alice.headers)
    assert r.status_code == 204, r.text
    assert await closed(ws) == (1008, "forbidden")
    await api.share(alice, item, bob, "writer")
    again, frame = await ready(api.server, item, bob.token)
    assert frame["role"] == "writer"
    await again.send('{"type":"ping"}')
    assert (await read_until(again, "pong"))[-1] == {"type": "pong"}
    await again.close()


async def test_a_recreated_item_id_is_not_locked_out(api: Api) -> None:
    alice = await api.user()
    item = await api.item(alice)
    ws, _ = await ready(api.server, item, alice.token)
    r = await api.http.delete(f"/items/{item}", headers=alice.headers)
    assert r.status_code == 204, r.text
    assert await closed(ws) == (1008, "forbidden")
    r = await api.http.post("/items", json={"name": "again", "id": item}, headers=alice.headers)
    assert r.status_code == 201, r.text
    again, frame = await ready(api.server, item, alice.token)
    assert frame["last_seq"] == 0
    await again.close()


# Monitor sockets are sockets of their user.


async def test_monitor_sockets_count_against_the_per_user_cap(make_server: MakeServer) -> None:
    with make_server(max_sockets_per_user=2) as srv:
        async with api_for(srv) as api:
            alice = await api.user()
            item = await api.item(alice)
        channel, _ = await ready(srv, item, alice.token)
        monitor = await connect(monitor_url(srv, alice))
        assert (await recv(monitor))["type"] == "stats"
        third = await connect(monitor_url(srv, alice))
        assert await closed(third) == (1013, "too many sockets")
        fourth = await connect(f"{srv.ws_url}/items/{item}/ws?token={alice.token}")
        assert await closed(fourth) == (1013, "too many sockets")
        for ws in (channel, monitor):
            await ws.close()


async def test_one_stats_sample_serves_every_monitor(make_server: MakeServer) -> None:
    with make_server() as srv:
        async with api_for(srv) as api:
            users = [await api.user() for _ in range(8)]
        feed = srv.runtime.stats
        before = feed.samples
        monitors = await asyncio.gather(*(connect(monitor_url(srv, u, "1")) for u in users))
        frames = [await recv(ws) for ws in monitors]
        assert all(f["type"] == "stats" for f in frames)
        # Sockets opened together are due together: they share samples (and timestamps).
        assert feed.samples - before < len(monitors)
        assert len({f["ts"] for f in frames}) < len(monitors)
        for ws in monitors:
            await ws.close()


async def test_a_monitor_closes_when_its_session_is_revoked_without_polling(api: Api) -> None:
    alice = await api.user()
    ws = await connect(monitor_url(api.server, alice, "60"))
    r = await api.http.post("/auth/logout", headers=alice.headers)
    assert r.status_code == 204, r.text
    assert await closed(ws) == (1008, "session revoked")


async def test_a_disconnect_during_the_monitors_ticks_logs_no_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await api.user()
    caplog.set_level(logging.INFO)
    for _ in range(5):
        ws = await connect(monitor_url(api.server, alice))
        assert (await recv(ws))["type"] == "stats"
        ws.transport.abort()
        await ws.close()
    # Ticks after the disconnects: a fresh monitor gets two frames.
    async with connect(monitor_url(api.server, alice)) as ws:
        for _ in range(2):
            assert (await recv(ws))["type"] == "stats"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


# Frames that cost the server something are rate-limited or coalesced.


async def test_refresh_frames_are_rate_limited(make_server: MakeServer) -> None:
    with make_server(ws_refresh_rate=0.001, ws_refresh_burst=2) as srv:
        async with api_for(srv) as api:
            alice = await api.user()
            item = await api.item(alice)
        ws, _ = await ready(srv, item, alice.token)
        refresh = json.dumps({"type": "refresh", "token": alice.token})
        for _ in range(3):
            await ws.send(refresh)
        await ws.send('{"type":"ping"}')
        frames = await read_until(ws, lambda f: f["type"] == "pong")
        errors = [f for f in frames if f["type"] == "error"]
        assert [e["code"] for e in errors] == ["rate_limited"]
        await ws.close()


async def test_presence_churn_is_announced_as_its_net_change(make_server: MakeServer) -> None:
    # A tick long enough to hold the whole burst below.
    with make_server(presence_tick=3.0) as srv:
        async with api_for(srv) as api:
            alice, bob, carol = await api.user(), await api.user(), await api.user()
            item = await api.item(alice)
            await api.share(alice, item, bob, "reader")
            await api.share(alice, item, carol, "reader")
        listener, _ = await ready(srv, item, alice.token)
        for _ in range(4):
            ws, _ = await ready(srv, item, bob.token)
            await ws.close()
            await closed_after_close(ws)
        lasting, _ = await ready(srv, item, carol.token)
        frames = await read_until(listener, lambda f: f.get("user") == carol.username)
        presence = [(f["event"], f["user"]) for f in frames if f["type"] == "presence"]
        # Alice's own join (a quiet item announces at once), then the tick's net
        # change: bob came and went four times (nothing to say), carol came.
        assert presence == [("join", alice.username), ("join", carol.username)]
        for ws in (listener, lasting):
            await ws.close()


async def closed_after_close(ws: ClientConnection) -> None:
    await asyncio.wait_for(ws.wait_closed(), 10)
