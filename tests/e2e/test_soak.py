"""Bounded soak: thousands of channel connects and disconnects leak nothing.

The service runs as its own uvicorn process (`tests.processes.Worker`), so its file
descriptors and memory are its own in /proc. After a warm-up, 2,000 connect/disconnect
cycles run 20 at a time, mixing good credentials (token, ticket, cookie) with bad ones
(garbage, expired, forged, not a member, no credential, foreign origin, bad `since`)
and abrupt disconnects. Every cycle checks its exact outcome; afterwards the process
must be back where it started: open descriptors, open sockets and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.processes import Worker
from tests.servers import REDIS_URL, TEST_SECRET, Backend, postgres_database
from tests.support import PASSWORD, unique
from tests.tokens import WRONG_KEY, claims_of, sign

CYCLES = 2000
# Long enough for the database pool's connections and page caches to reach their
# working size (RSS measured over 14,000 cycles flattens out after about 1,000).
WARM_UP = 1000
CONCURRENCY = 20
TIMEOUT = 15.0
FD_SLACK = 5
# Memory: after the warm-up every code path has run and its caches, pools and arenas
# exist, so steady-state cycles need little new memory: measured 4-7 MB over the 2,000
# cycles after this warm-up (caches still settling), under 2 MB per 2,000 once fully warm.
# CPython rarely hands freed memory back to the OS and fragmentation adds noise, so a
# bound of 20 MB tolerates that while catching a leak of 10 kB or more per cycle
# (2,000 x 10 kB = 20 MB): a socket's buffers, an outbox, a task or a frame kept alive.
RSS_GROWTH_LIMIT_KB = 20 * 1024


@pytest.fixture
def worker(backend: Backend, tmp_path: Path) -> Iterator[Worker]:
    with contextlib.ExitStack() as stack:
        database = ""
        if backend.database == "postgres":
            database = stack.enter_context(postgres_database())
        env = {
            **os.environ,
            "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": TEST_SECRET,
            "DATABASE_URL": database,
            "BROKER_URL": REDIS_URL if backend.broker == "redis" else "memory://",
        }
        w = Worker(env, tmp_path / "server.log").start()
        stack.callback(w.stop)
        yield w


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def gauge(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class Soak:
    def __init__(self, worker: Worker, http: httpx.AsyncClient) -> None:
        self.worker = worker
        self.http = http
        self.counts: dict[str, int] = {}

    async def setup(self) -> None:
        self.username, self.token, self.cookie = await self._login()
        _, self.outsider_token, _ = await self._login()
        r = await self.http.post(
            "/items", json={"name": "soak"}, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert r.status_code == 201, r.text
        self.item = r.json()["id"]
        claims = claims_of(self.token)
        now = int(time.time())
        expired = {**claims, "jti": uuid.uuid4().hex, "iat": now - 120, "exp": now - 60}
        self.expired = sign(expired)
        self.forged = sign({**claims, "jti": uuid.uuid4().hex}, key=WRONG_KEY)

    async def _login(self) -> tuple[str, str, str]:
        username = unique("soak")
        body = {"username": username, "password": PASSWORD}
        r = await self.http.post("/auth/register", json=body)
        assert r.status_code == 201, r.text
        r = await self.http.post("/auth/login", json=body)
        assert r.status_code == 200, r.text
        cookie = r.cookies["session"]
        self.http.cookies.clear()
        return username, r.json()["access_token"], cookie

    def url(self, token: str | None = None, **query: str) -> str:
        if token is not None:
            query["token"] = token
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.worker.ws}/items/{self.item}/ws" + (f"?{qs}" if qs else "")

    def kinds(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """Each kind of cycle: its name and how to run it."""
        evil = self.cookie_headers("https://evil.example")
        return [
            ("token", lambda: self.good(self.url(self.token))),
            ("ticket", self.ticket),
            ("cookie", lambda: self.good(self.url(), self.cookie_headers(self.worker.base))),
            ("abort", lambda: self.good(self.url(self.token), abort=True)),
            ("publish-and-leave", lambda: self.good(self.url(self.token), publish=True)),
            ("garbage", lambda: self.refused(self.url("not-a-jwt"), "invalid token")),
            ("expired", lambda: self.refused(self.url(self.expired), "token expired")),
            ("forged", lambda: self.refused(self.url(self.forged), "invalid token")),
            ("outsider", lambda: self.refused(self.url(self.outsider_token), "forbidden")),
            ("none", lambda: self.refused(self.url(), "missing credentials")),
            ("foreign-origin", lambda: self.refused(self.url(), "origin not allowed", evil)),
            ("bad-since", lambda: self.refused(self.url(self.token, since="-1"), "invalid since")),
        ]

    async def cycle(self, n: int) -> None:
        kinds = self.kinds()
        name, run = kinds[n % len(kinds)]
        await run()
        self.counts[name] = self.counts.get(name, 0) + 1

    def cookie_headers(self, origin: str) -> dict[str, str]:
        return {"Cookie": f"session={self.cookie}", "Origin": origin}

    async def ticket(self) -> None:
        r = await self.http.post(
            "/auth/ws-ticket",
            json={"item_id": self.item},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code == 200, r.text
        await self.good(self.url(r.json()["token"]))

    async def good(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        abort: bool = False,
        publish: bool = False,
    ) -> None:
        ws = await open_socket(url, headers)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert first["type"] == "ready" and first["item_id"] == self.item, first
            if publish:
                # Leave right after publishing, without waiting for the ack.
                await ws.send(json.dumps({"type": "publish", "data": "soak"}))
            if abort:
                ws.transport.abort()  # no close frame: the server sees the TCP reset
        finally:
            await close(ws)

    async def refused(self, url: str, reason: str, headers: dict[str, str] | None = None) -> None:
        ws = await open_socket(url, headers)
        try:
            frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            assert (closed.rcvd.code, closed.rcvd.reason) == (1008, reason)
        else:
            raise AssertionError(f"a frame came before the close: {frame!r}")
        finally:
            await close(ws)

    async def run(self, cycles: int, start: int = 0) -> None:
        queue = iter(range(start, start + cycles))

        async def lane() -> None:
            for n in queue:
                await self.cycle(n)

        await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))

    async def open_sockets(self) -> float:
        r = await self.http.get("/metrics")
        assert r.status_code == 200
        return gauge(r.text, "item_channels_open_sockets")

    async def tasks(self) -> float:
        r = await self.http.get("/metrics")
        return gauge(r.text, "item_channels_asyncio_tasks")

    async def settle(self, pid: int, fds_at_most: int | None = None) -> tuple[float, int]:
        """Wait (bounded) until the server has closed every socket; (gauge, fds)."""
        deadline = time.monotonic() + 15
        while True:
            sockets, fds = await self.open_sockets(), fd_count(pid)
            settled = sockets == 0 and (fds_at_most is None or fds <= fds_at_most)
            if settled or time.monotonic() > deadline:
                return sockets, fds
            await asyncio.sleep(0.1)


def open_socket(url: str, headers: dict[str, str] | None) -> Any:
    # max_queue=None: the client never pauses reading. With flow control on, presence
    # frames arriving after our close frame can fill the queue and pause reading, and the
    # client then waits its whole close timeout for an EOF it no longer reads.
    return connect(url, open_timeout=TIMEOUT, additional_headers=headers, max_queue=None)


async def close(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), TIMEOUT)


async def test_connect_disconnect_cycles_leak_no_descriptor_socket_or_memory(
    worker: Worker,
) -> None:
    assert worker.proc is not None
    pid = worker.proc.pid
    async with httpx.AsyncClient(base_url=worker.base, timeout=TIMEOUT) as http:
        soak = Soak(worker, http)
        await soak.setup()
        await soak.run(WARM_UP)
        sockets, fds_before = await soak.settle(pid)
        assert sockets == 0
        rss_before = rss_kb(pid)
        tasks_before = await soak.tasks()

        await soak.run(CYCLES, start=WARM_UP)
        assert sum(soak.counts.values()) == WARM_UP + CYCLES
        assert len(soak.counts) == len(soak.kinds())  # every kind of cycle ran

        sockets, fds_after = await soak.settle(pid, fds_before + FD_SLACK)
        rss_after = rss_kb(pid)
        print(  # shown on failure (and with -s): where the process ended up
            f"cycles {soak.counts}; open sockets {sockets}; fds {fds_before} -> {fds_after}; "
            f"RSS {rss_before} -> {rss_after} kB"
        )
        assert sockets == 0, "sockets still counted open after every client left"
        # The server's own tasks (broker, hub, writer, item subscriptions) stay; no task
        # may be left behind per connection. A few of slack: /metrics runs in one.
        tasks_after = await soak.tasks()
        assert tasks_after <= tasks_before + 3, (tasks_before, tasks_after)
        assert abs(fds_after - fds_before) <= FD_SLACK, (fds_before, fds_after)
        growth = rss_after - rss_before
        assert growth < RSS_GROWTH_LIMIT_KB, (
            f"RSS grew by {growth} kB ({rss_before} -> {rss_after})"
        )

        # Still serving, and every acknowledged-or-not publish stored at most once.
        r = await http.get("/readyz")
        assert r.status_code == 200, r.text
        r = await http.get(
            f"/items/{soak.item}/messages",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {soak.token}"},
        )
        assert r.status_code == 200
        seqs = [m["seq"] for m in r.json()]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) <= soak.counts["publish-and-leave"]
        deadline = time.monotonic() + 10
        while True:  # presence is updated right after a socket is counted closed
            r = await http.get(
                f"/items/{soak.item}/presence", headers={"Authorization": f"Bearer {soak.token}"}
            )
            if r.json() == {"count": 0, "users": []} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert r.json() == {"count": 0, "users": []}
    log = worker.log.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-5000:]
