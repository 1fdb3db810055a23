"""`WS /monitor/ws`: stats frames, their cadence, and the item channels' credential checks."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from api.routes.monitor import parse_interval
from tests.servers import LiveServer
from tests.support import (
    TIMEOUT,
    TS,
    Api,
    User,
    closed,
    cookie_headers,
    logout,
    ping_barrier,
    recv,
    reject,
    unique,
)
from tests.tokens import access_claims, sign

POLICY = 1008
STATS_KEYS = {"type", "ts", "cpu_percent", "memory_percent", "connections", "messages_per_s"}


def monitor_url(server: LiveServer, **query: str) -> str:
    url = f"{server.ws_url}/monitor/ws"
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def ticket(api: Api, user: User, item_id: str | None = None) -> str:
    body = {"item_id": item_id} if item_id is not None else None
    r = await api.http.post("/auth/ws-ticket", json=body, headers=user.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


async def stats(ws: ClientConnection, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    frames = []
    for _ in range(count):
        frame = await recv(ws, timeout)
        assert frame["type"] == "stats", frame
        frames.append(frame)
    return frames


def seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def gaps(frames: list[dict[str, Any]]) -> list[float]:
    times = [seconds(f["ts"]) for f in frames]
    return [b - a for a, b in itertools.pairwise(times)]


# Frames.


async def test_stats_frames_have_the_contract_shape(api: Api) -> None:
    alice = await api.user()
    async with connect(monitor_url(api.server, token=alice.token, interval="0.2")) as ws:
        frames = await stats(ws, 3)
    for frame in frames:
        assert set(frame) == STATS_KEYS
        assert frame["type"] == "stats"
        assert frame["ts"] == TS
        assert frame["ts"].endswith("Z")
        for key in ("cpu_percent", "memory_percent"):
            assert isinstance(frame[key], int | float)
            assert 0 <= frame[key] <= 100
        assert isinstance(frame["connections"], int)
        assert frame["connections"] >= 1  # this socket
        assert isinstance(frame["messages_per_s"], int | float)
        assert frame["messages_per_s"] >= 0


async def test_frames_come_every_interval(api: Api) -> None:
    alice = await api.user()
    async with connect(monitor_url(api.server, token=alice.token, interval="0.3")) as ws:
        frames = await stats(ws, 4)
    # Consecutive frames are never closer than the interval (timestamps have ms precision).
    assert all(gap >= 0.3 - 0.01 for gap in gaps(frames)), gaps(frames)


@pytest.mark.parametrize("interval", ["0", "0.001", "-5"], ids=["zero", "tiny", "negative"])
async def test_short_intervals_are_clamped_to_a_fifth_of_a_second(api: Api, interval: str) -> None:
    alice = await api.user()
    async with connect(monitor_url(api.server, token=alice.token, interval=interval)) as ws:
        frames = await stats(ws, 3)
    assert all(gap >= 0.2 - 0.01 for gap in gaps(frames)), gaps(frames)


@pytest.mark.parametrize("query", [{}, {"interval": "abc"}], ids=["absent", "not-a-number"])
async def test_the_default_interval_is_one_second(api: Api, query: dict[str, str]) -> None:
    alice = await api.user()
    async with connect(monitor_url(api.server, token=alice.token, **query)) as ws:
        frames = await stats(ws, 2)
    assert gaps(frames)[0] >= 1.0 - 0.01, gaps(frames)


async def test_a_long_interval_sends_nothing_early(api: Api) -> None:
    alice = await api.user()
    async with connect(monitor_url(api.server, token=alice.token, interval="1e9")) as ws:
        # Clamped to 60 s: still silent after a while, and the socket is open.
        assert await ping_barrier(ws) == []
        await asyncio.sleep(1.2)
        assert await ping_barrier(ws) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 1.0),
        ("1", 1.0),
        ("0.5", 0.5),
        ("2.5", 2.5),
        ("0.2", 0.2),
        ("0.1", 0.2),
        ("0", 0.2),
        ("-3", 0.2),
        ("-inf", 0.2),
        ("60", 60.0),
        ("61", 60.0),
        ("1e9", 60.0),
        ("inf", 60.0),
        ("nan", 1.0),
        ("", 1.0),
        ("abc", 1.0),
        ("1s", 1.0),
    ],
)
def test_interval_parsing(raw: str | None, expected: float) -> None:
    assert parse_interval(raw) == expected


async def test_connections_count_monitor_and_channel_sockets(api: Api) -> None:
    alice = await api.user()
    item_id = await api.item(alice)
    channel_url = f"{api.server.ws_url}/items/{item_id}/ws?token={alice.token}"
    async with (
        connect(monitor_url(api.server, token=alice.token, interval="0.2")) as monitor,
        connect(channel_url) as channel,
    ):
        assert (await recv(channel))["type"] == "ready"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            frame = await recv(monitor)
            if frame["connections"] >= 2:
                break
            assert loop.time() < deadline, frame


async def test_messages_per_second_follow_stored_messages(api: Api) -> None:
    alice = await api.user()
    item_id = await api.item(alice)
    async with connect(monitor_url(api.server, token=alice.token, interval="0.2")) as ws:
        await stats(ws, 1)
        for n in range(10):
            await api.post(alice, item_id, n)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            frame = await recv(ws)
            if frame["messages_per_s"] > 0:
                break
            assert loop.time() < deadline, frame


async def test_monitor_sockets_count_in_the_open_sockets_metric(api: Api) -> None:
    alice = await api.user()

    async def open_sockets() -> float:
        r = await api.http.get("/metrics")
        for line in r.text.splitlines():
            if line.startswith("item_channels_open_sockets "):
                return float(line.split()[1])
        raise AssertionError("no open sockets gauge")

    async with connect(monitor_url(api.server, token=alice.token)) as ws:
        assert await ping_barrier(ws) == []
        assert await open_sockets() >= 1


async def test_pings_are_answered_and_publishes_refused(api: Api) -> None:
    alice = await api.user()
    async with connect(monitor_url(api.server, token=alice.token, interval="60")) as ws:
        await ws.send('{"type":"ping"}')
        assert await recv(ws) == {"type": "pong"}
        await ws.send('{"type":"publish","data":1,"ref":"r1"}')
        frame = await recv(ws)
        assert frame["type"] == "error"
        assert frame["code"] == "bad_request"
        assert frame["ref"] == "r1"
        await ws.send("not json")
        assert (await recv(ws))["code"] == "bad_request"
        await ws.send(b"\x00")
        code, _ = await closed(ws)
        assert code == 1003


# Credentials: the same as item channels, without the item check.


async def test_an_unscoped_ticket_is_accepted_once(api: Api) -> None:
    alice = await api.user()
    token = await ticket(api, alice)
    async with connect(monitor_url(api.server, token=token, interval="0.2")) as ws:
        await stats(ws, 1)
    assert await reject(monitor_url(api.server, token=token)) == (POLICY, "invalid token", None)


async def test_an_item_ticket_is_an_invalid_token_here(api: Api) -> None:
    alice = await api.user()
    item_id = await api.item(alice)
    token = await ticket(api, alice, item_id)
    assert await reject(monitor_url(api.server, token=token)) == (POLICY, "invalid token", None)


async def test_missing_credentials(api: Api) -> None:
    assert await reject(monitor_url(api.server)) == (POLICY, "missing credentials", None)


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
async def test_invalid_token(api: Api, token: str) -> None:
    assert await reject(monitor_url(api.server, token=token)) == (POLICY, "invalid token", None)


async def test_expired_token(api: Api) -> None:
    alice = await api.user()
    now = int(time.time())
    token = sign(access_claims(alice, iat=now - 120, exp=now - 60))
    assert await reject(monitor_url(api.server, token=token)) == (POLICY, "token expired", None)


async def test_token_of_a_revoked_session(api: Api) -> None:
    alice = await api.user()
    await logout(api, alice.token)
    result = await reject(monitor_url(api.server, token=alice.token))
    assert result == (POLICY, "invalid session", None)


async def test_bearer_subprotocol_is_answered_also_when_refusing(api: Api) -> None:
    alice = await api.user()
    async with connect(
        monitor_url(api.server, interval="0.2"), subprotocols=["bearer", alice.token]
    ) as ws:
        assert ws.subprotocol == "bearer"
        await stats(ws, 1)
    result = await reject(monitor_url(api.server), subprotocols=["bearer", "garbage"])
    assert result == (POLICY, "invalid token", "bearer")


async def test_cookie_from_the_own_origin_is_accepted(api: Api) -> None:
    alice = await api.user()
    async with connect(
        monitor_url(api.server, interval="0.2"),
        additional_headers=cookie_headers(alice.cookie),
        origin=api.server.base_url,
    ) as ws:
        await stats(ws, 1)


async def test_cookie_without_origin(api: Api) -> None:
    alice = await api.user()
    result = await reject(monitor_url(api.server), additional_headers=cookie_headers(alice.cookie))
    assert result == (POLICY, "origin not allowed", None)


async def test_cookie_from_another_origin(api: Api) -> None:
    alice = await api.user()
    result = await reject(
        monitor_url(api.server),
        additional_headers=cookie_headers(alice.cookie),
        origin="http://evil.example",
    )
    assert result == (POLICY, "origin not allowed", None)


async def test_unknown_cookie(api: Api) -> None:
    result = await reject(
        monitor_url(api.server),
        additional_headers=cookie_headers(unique("nope")),
        origin=api.server.base_url,
    )
    assert result == (POLICY, "invalid session", None)


async def test_an_open_monitor_closes_when_its_session_is_revoked(api: Api) -> None:
    alice = await api.user()
    token = await ticket(api, alice)
    async with connect(monitor_url(api.server, token=token, interval="60")) as ws:
        assert await ping_barrier(ws) == []
        await logout(api, alice.token)
        assert await closed(ws) == (POLICY, "session revoked")


async def test_an_open_monitor_closes_when_its_token_expires(api: Api) -> None:
    alice = await api.user()
    now = int(time.time())
    token = sign(access_claims(alice, iat=now, exp=now + 2))
    async with connect(monitor_url(api.server, token=token, interval="60")) as ws:
        assert await ping_barrier(ws) == []
        assert await closed(ws) == (POLICY, "token expired")


async def test_a_refresh_keeps_a_token_socket_open(api: Api) -> None:
    alice = await api.user()
    now = int(time.time())
    short = sign(access_claims(alice, iat=now, exp=now + 2))
    async with connect(monitor_url(api.server, token=short, interval="0.5")) as ws:
        await ws.send(f'{{"type":"refresh","token":"{alice.token}"}}')
        # Past the first token's expiry, the socket still answers.
        await asyncio.sleep(max(0.0, now + 3 - time.time()))
        frames = await ping_barrier(ws)
        assert {f["type"] for f in frames} == {"stats"}


async def test_monitor_page_is_served(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.get("/monitor")
    assert r.status_code == 200
    assert "content-security-policy" in r.headers
    assert 'src="/static/monitor.js"' in r.text
