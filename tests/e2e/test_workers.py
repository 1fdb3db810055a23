"""Several worker processes sharing PostgreSQL and Redis, as in production."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.client import Client, HTTPError
from api.db import make_engine, make_session_factory
from api.items import messages
from tests.processes import Worker
from tests.servers import POSTGRES_URL, REDIS_URL, TEST_SECRET, free_port, postgres_database
from tests.support import PASSWORD, closed, next_messages, recv, transport, unique

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL), reason="needs TEST_POSTGRES_URL and TEST_REDIS_URL"
)
TIMEOUT = 15.0


@contextmanager
def workers(tmp: Path, count: int = 2, broker_url: str = "") -> Iterator[list[Worker]]:
    with postgres_database() as db_url:
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "BROKER_URL": broker_url or REDIS_URL,
            "SECRET_KEY": TEST_SECRET,
            "VAR_DIR": str(tmp),
            "GAP_CHECK_INTERVAL": "0.5",
            # Many tests register from one address; the limits have tests of their own.
            "REGISTRATIONS_PER_ADDRESS": "100000",
            "LOGIN_FAILURES_PER_ADDRESS": "100000",
            # The workers of one test share their counts, and no other server's.
            "RATE_LIMIT_KEY_PREFIX": f"ic-test-{uuid.uuid4().hex[:12]}",
        }
        started: list[Worker] = []
        try:
            for i in range(count):
                started.append(Worker(env, tmp / f"worker{i}.log").start())
            yield started
        finally:
            for worker in started:
                worker.stop()


class Session:
    """A user logged in through one worker."""

    def __init__(self, worker: Worker, username: str, token: str) -> None:
        self.worker = worker
        self.token = token
        self.username = username
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def client(self, worker: Worker | None = None) -> Client:
        """The project's client, on `worker` (by default the one logged in through)."""
        return Client(
            (worker or self.worker).base, self.token, timeout=TIMEOUT, transport=transport()
        )


async def login(worker: Worker, username: str | None = None) -> Session:
    username = username or unique()
    async with Client(worker.base, timeout=TIMEOUT, transport=transport()) as client:
        try:
            await client.register(username, PASSWORD)
        except HTTPError as exc:
            if exc.status != 409:  # taken: the same user logging in again
                raise
        token = await client.login(username, PASSWORD)
    return Session(worker, username, token["access_token"])


async def rest(worker: Worker, method: str, path: str, who: Session, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=worker.base, timeout=TIMEOUT) as http:
        return await http.request(method, path, headers=who.headers, **kw)


async def channel(worker: Worker, item: str, who: Session, **query: str) -> ClientConnection:
    qs = "".join(f"&{k}={v}" for k, v in query.items())
    ws = await connect(f"{worker.ws}/items/{item}/ws?token={who.token}{qs}", open_timeout=TIMEOUT)
    assert (await recv(ws))["type"] == "ready"
    return ws


async def messages_until(ws: ClientConnection, last_seq: int) -> list[int]:
    """Seqs of the message frames received until `last_seq` arrives."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < last_seq:
        frame = await recv(ws, TIMEOUT)
        if frame["type"] == "message":
            seqs.append(frame["seq"])
    return seqs


async def shared_item(owner: Session, *members: Session) -> str:
    async with owner.client() as client:
        item = (await client.create_item("shared"))["id"]
        for member in members:
            await client.add_member(item, member.username, "writer")
    return item


async def test_messages_reach_every_worker_in_order_once(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        alice, bob = await login(w1), await login(w2)
        item = await shared_item(alice, bob)
        async with AsyncExitStack() as stack:
            # Each user's channel on each worker, through the project's client.
            channels = []
            for worker in (w1, w2):
                for who in (alice, bob):
                    client = await stack.enter_async_context(who.client(worker))
                    channels.append(await stack.enter_async_context(client.channel(item)))

            async def publish(via: Session, n: int) -> None:
                async with via.client() as client:
                    for i in range(n):
                        await client.post_message(item, i)

            await asyncio.gather(publish(alice, 30), publish(bob, 30))
            for channel_ in channels:
                seqs = [m["seq"] for m in await next_messages(channel_, 60, TIMEOUT)]
                assert seqs == list(range(1, 61))


async def test_presence_counts_users_across_workers(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        alice, bob = await login(w1), await login(w2)
        item = await shared_item(alice, bob)
        ws_a = await channel(w1, item, alice)
        joined = await recv(ws_a)
        assert joined == {"type": "presence", "event": "join", "user": alice.username, "count": 1}
        ws_b = await channel(w2, item, bob)
        seen_by_a = await recv(ws_a)
        assert seen_by_a == {"type": "presence", "event": "join", "user": bob.username, "count": 2}
        for worker in (w1, w2):
            r = await rest(worker, "GET", f"/items/{item}/presence", alice)
            assert r.json() == {"count": 2, "users": sorted([alice.username, bob.username])}
        await ws_b.close()
        left = await recv(ws_a)
        assert left == {"type": "presence", "event": "leave", "user": bob.username, "count": 1}
        await ws_a.close()


async def test_a_dead_worker_is_forgotten_by_presence(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        alice, bob = await login(w1), await login(w2)
        item = await shared_item(alice, bob)
        ws_a = await channel(w1, item, alice)
        ws_b = await channel(w2, item, bob)
        try:
            while (await recv(ws_a))["user"] != bob.username:
                pass
            w2.kill()
            # The reaper runs on the surviving worker: bounded by heartbeat + expiry.
            left = await recv(ws_a, 20)
            assert left == {"type": "presence", "event": "leave", "user": bob.username, "count": 1}
            r = await rest(w1, "GET", f"/items/{item}/presence", alice)
            assert r.json() == {"count": 1, "users": [alice.username]}
        finally:
            await ws_a.close()
            await ws_b.close()


async def test_logout_and_removal_close_sockets_on_other_workers(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        alice, bob = await login(w1), await login(w1)
        item = await shared_item(alice, bob)
        bobs_socket = await channel(w2, item, bob)
        r = await rest(w1, "DELETE", f"/items/{item}/members/{bob.username}", alice)
        assert r.status_code == 204
        assert await closed(bobs_socket) == (1008, "forbidden")

        alices_socket = await channel(w2, item, alice)
        r = await rest(w1, "POST", "/auth/logout", alice)
        assert r.status_code == 204
        assert await closed(alices_socket) == (1008, "session revoked")


async def test_a_member_added_back_is_let_in_on_every_worker(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        alice, bob = await login(w1), await login(w1)
        item = await shared_item(alice, bob)
        bobs_socket = await channel(w2, item, bob)
        r = await rest(w1, "DELETE", f"/items/{item}/members/{bob.username}", alice)
        assert r.status_code == 204
        assert await closed(bobs_socket) == (1008, "forbidden")
        r = await rest(
            w1, "PUT", f"/items/{item}/members/{bob.username}", alice, json={"role": "writer"}
        )
        assert r.status_code == 200, r.text
        # Both workers applied the removal, then the grant: neither keeps bob out.
        for worker in (w1, w2):
            again = await channel(worker, item, bob)
            await again.close()


async def test_a_message_whose_publish_was_lost_still_arrives(tmp_path: Path) -> None:
    """A worker that stored a message and died before publishing it leaves no hole."""
    with workers(tmp_path) as (w1, _):
        alice = await login(w1)
        item = await shared_item(alice)
        ws = await channel(w1, item, alice)
        try:
            engine = make_engine(w1.env["DATABASE_URL"])
            factory = make_session_factory(engine)
            async with factory() as db:
                user_id = (await rest(w1, "GET", "/auth/me", alice)).json()["id"]
                await messages.store(db, item, user_id, alice.username, '"stored only"')
            await engine.dispose()
            frame = await recv(ws, 10)
            while frame["type"] != "message":
                frame = await recv(ws, 10)
            assert frame["seq"] == 1 and frame["data"] == "stored only"
        finally:
            await ws.close()


@contextmanager
def own_redis() -> Iterator[tuple[str, Any]]:
    """A redis-server of this test's own on a spare port, with a restart function."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)

    def stop() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", (stop, start)
    finally:
        stop()


async def test_a_redis_restart_loses_no_message(tmp_path: Path) -> None:
    with (
        own_redis() as (url, (stop_redis, start_redis)),
        workers(tmp_path, broker_url=url) as (
            w1,
            w2,
        ),
    ):
        alice, bob = await login(w1), await login(w2)
        item = await shared_item(alice, bob)
        listener = await channel(w2, item, bob)
        total = 90
        try:

            async def stream() -> None:
                for i in range(total):
                    r = await rest(w1, "POST", f"/items/{item}/messages", alice, json={"data": i})
                    assert r.status_code == 201, r.text
                    if i == 30:
                        stop_redis()
                    if i == 60:
                        start_redis()
                    await asyncio.sleep(0.01)

            await stream()
            # Connected clients keep receiving through the store poll during the
            # outage, and everything once Redis is back; no gap, no duplicate.
            assert await messages_until(listener, total) == list(range(1, total + 1))
        finally:
            await listener.close()
        resumed = await channel(w1, item, bob, since="0")
        try:
            assert await messages_until(resumed, total) == list(range(1, total + 1))
        finally:
            await resumed.close()
        for worker in (w1, w2):
            assert worker.proc is not None and worker.proc.poll() is None
            r = await rest(worker, "GET", "/readyz", alice)
            assert r.status_code == 200, r.text


async def first_frame_or_close(url: str) -> str:
    """'ready' or the close reason of a handshake."""
    async with connect(url, open_timeout=TIMEOUT) as ws:
        try:
            return str((await recv(ws))["type"])
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
            return closed.rcvd.reason


async def test_a_ticket_presented_to_two_workers_at_once_opens_one_socket(
    tmp_path: Path,
) -> None:
    with workers(tmp_path) as (w1, w2):
        alice = await login(w1)
        item = await shared_item(alice)
        for _ in range(5):
            r = await rest(w1, "POST", "/auth/ws-ticket", alice, json={"item_id": item})
            ticket = r.json()["token"]
            outcomes = await asyncio.gather(
                *(first_frame_or_close(f"{w.ws}/items/{item}/ws?token={ticket}") for w in (w1, w2))
            )
            assert sorted(outcomes) == ["invalid token", "ready"]


async def test_a_session_revoked_on_one_worker_is_refused_by_the_others(tmp_path: Path) -> None:
    """Sessions are cached per worker; a logout elsewhere evicts them through Redis."""
    with workers(tmp_path) as (w1, w2):
        alice = await login(w1)
        item = await shared_item(alice)
        ws = await channel(w2, item, alice)  # w2 now has alice's session cached
        await ws.close()
        r = await rest(w2, "GET", "/auth/me", alice)
        assert r.status_code == 200
        r = await rest(w1, "POST", "/auth/logout", alice)
        assert r.status_code == 204
        # Bounded wait for the broker's eviction message to reach w2.
        for _ in range(50):
            if (await rest(w2, "GET", "/auth/me", alice)).status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert (await rest(w2, "GET", "/auth/me", alice)).status_code == 401
        assert await first_frame_or_close(f"{w2.ws}/items/{item}/ws?token={alice.token}") == (
            "invalid session"
        )
