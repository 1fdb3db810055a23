"""Abuse limits and heartbeats, each on a server configured for it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.processes import ROOT
from tests.rawsocket import silent_socket
from tests.servers import TEST_SECRET, LiveServer, free_port
from tests.support import PASSWORD, Api, User, closed, read_until, ready, recv, unique

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


async def test_publish_flood_is_rate_limited_and_the_socket_stays_open(
    make_server: MakeServer,
) -> None:
    with make_server(ws_publish_rate=2, ws_publish_burst=3) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            owner = await api.user()
            item = await api.item(owner)
        ws, _ = await ready(srv, item, owner.token)
        async with ws:
            for n in range(8):
                await ws.send(json.dumps({"type": "publish", "data": n, "ref": f"r{n}"}))
            acks, limited = [], []
            while len(acks) + len(limited) < 8:
                frame = await recv(ws)
                if frame["type"] == "ack":
                    acks.append(frame["ref"])
                elif frame["type"] == "error":
                    assert frame["code"] == "rate_limited"
                    limited.append(frame["ref"])
            assert acks[:3] == ["r0", "r1", "r2"]
            assert len(limited) >= 4  # the bucket refills slowly: most of the rest refused
            await ws.send('{"type":"ping"}')
            assert (await read_until(ws, "pong"))[-1] == {"type": "pong"}
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
                r = await http.get(f"/items/{item}/messages", headers=owner.headers)
            assert [m["data"] for m in r.json()] == [int(ref[1:]) for ref in acks]


async def test_sockets_per_user_and_per_item_are_capped(make_server: MakeServer) -> None:
    with make_server(max_sockets_per_user=2, max_sockets_per_item=3) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            alice, bob = await api.user(), await api.user()
            item = await api.item(alice)
            await api.share(alice, item, bob, "reader")
        first, _ = await ready(srv, item, alice.token)
        second, _ = await ready(srv, item, alice.token)
        third = await _open(srv, item, alice)
        assert await closed(third) == (1013, "too many sockets")
        b1, _ = await ready(srv, item, bob.token)
        b2 = await _open(srv, item, bob)
        assert await closed(b2) == (1013, "item full")
        await second.close()
        again, _ = await ready_when_freed(srv, item, alice)
        for ws in (first, again, b1):
            await ws.close()


async def _open(srv: LiveServer, item: str, user: User) -> ClientConnection:
    return await connect(f"{srv.ws_url}/items/{item}/ws?token={user.token}")


async def ready_when_freed(
    srv: LiveServer, item: str, user: User
) -> tuple[ClientConnection, dict[str, object]]:
    """The server frees a slot when it has processed the close: retry a bounded number of times."""
    for _ in range(50):
        ws = await _open(srv, item, user)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed as exc:  # not freed yet: 1013 before any frame
            assert exc.rcvd is not None and exc.rcvd.code == 1013, exc
        else:
            if first["type"] == "ready":
                return ws, first
        await ws.close()
        await asyncio.sleep(0.05)
    raise AssertionError("slot never freed")


async def test_failed_logins_are_throttled_per_username(make_server: MakeServer) -> None:
    with make_server(login_failures_per_username=3, login_failures_per_address=1000) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            api = Api(srv, http)
            victim = await api.user()
            for _ in range(3):
                r = await http.post(
                    "/auth/login", json={"username": victim.username, "password": "wrong pass"}
                )
                assert r.status_code == 401
            # Even the right password waits now: that is what stops guessing.
            r = await http.post(
                "/auth/login", json={"username": victim.username, "password": PASSWORD}
            )
            assert r.status_code == 429
            assert int(r.headers["Retry-After"]) >= 1
            r = await http.post(
                "/auth/token", data={"username": victim.username, "password": PASSWORD}
            )
            assert r.status_code == 429
            # An unknown username behaves exactly alike.
            ghost = unique()
            for _ in range(3):
                r = await http.post("/auth/login", json={"username": ghost, "password": "x" * 9})
                assert r.status_code == 401
            r = await http.post("/auth/login", json={"username": ghost, "password": "x" * 9})
            assert r.status_code == 429 and "Retry-After" in r.headers
            # Other accounts are not affected.
            other = await api.user()
            assert other.token


async def test_failed_logins_are_throttled_per_address(make_server: MakeServer) -> None:
    with make_server(login_failures_per_username=100, login_failures_per_address=4) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            for _ in range(4):
                r = await http.post("/auth/login", json={"username": unique(), "password": "x" * 9})
                assert r.status_code == 401
            r = await http.post("/auth/login", json={"username": unique(), "password": "x" * 9})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


async def test_request_bodies_are_bounded(make_server: MakeServer) -> None:
    with make_server(max_request_bytes=2048, max_message_bytes=512) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            big = json.dumps({"username": "a" * 3000, "password": "p" * 10})
            r = await http.post(
                "/auth/register", content=big, headers={"content-type": "application/json"}
            )
            assert r.status_code == 413

            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"username": "'
                for _ in range(10):
                    yield b"a" * 500
                yield b'", "password": "pppppppppp"}'

            r = await http.post(
                "/auth/register", content=chunks(), headers={"content-type": "application/json"}
            )
            assert r.status_code == 413
            r = await http.post("/auth/register", json={"username": unique(), "password": PASSWORD})
            assert r.status_code == 201


@contextmanager
def served_by_cli(tmp: Path, **env: str) -> Iterator[str]:
    """`python -m api serve` with the given settings; yields the base URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "VAR_DIR": str(tmp / "var"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": "",
        "BROKER_URL": "memory://",
        **env,
    }
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "serve", "--port", str(port)],
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


async def test_a_peer_that_stops_answering_pings_is_dropped(tmp_path: Path) -> None:
    with served_by_cli(tmp_path, WS_PING_INTERVAL="0.3", WS_PING_TIMEOUT="0.5") as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            srv = _Endpoint(base)
            api = Api(srv, http)  # type: ignore[arg-type]
            watcher, silent = await api.user(), await api.user()
            item = await api.item(watcher)
            await api.share(watcher, item, silent, "reader")
            ws, _ = await ready(srv, item, watcher.token)  # type: ignore[arg-type]
            async with ws:
                assert (await read_until(ws, "presence"))[-1]["user"] == watcher.username
                port = int(base.rsplit(":", 1)[1])
                sock = silent_socket(port, f"/items/{item}/ws?token={silent.token}", timeout=10)
                try:
                    joined = (await read_until(ws, "presence"))[-1]
                    assert joined["event"] == "join" and joined["user"] == silent.username
                    # The watcher answers pings (its client does); the silent one is dropped.
                    left = (await read_until(ws, "presence", 15))[-1]
                    assert left == {
                        "type": "presence",
                        "event": "leave",
                        "user": silent.username,
                        "count": 1,
                    }
                finally:
                    sock.close()
                r = await http.get(f"/items/{item}/presence", headers=watcher.headers)
                assert r.json() == {"count": 1, "users": [watcher.username]}


class _Endpoint:
    """The bits of LiveServer the clients use, for a server run as a process."""

    def __init__(self, base: str) -> None:
        self.base_url = base
        self.ws_url = base.replace("http://", "ws://")
