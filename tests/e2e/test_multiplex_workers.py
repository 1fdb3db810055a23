"""`/ws` on two worker processes sharing PostgreSQL and Redis: messages, presence and
revocations cross workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.multiplexed import (
    open_ws,
    presence_of,
    send,
    subscribe,
    subscribed_frame,
    unsubscribed_frame,
)
from tests.e2e.test_workers import (
    TIMEOUT,
    Session,
    channel,
    login,
    rest,
    shared_item,
    workers,
)
from tests.processes import Worker
from tests.servers import POSTGRES_URL, REDIS_URL
from tests.support import closed, ping_barrier, read_until, recv

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL), reason="needs TEST_POSTGRES_URL and TEST_REDIS_URL"
)


async def test_messages_presence_and_revocation_cross_workers(tmp_path: Path) -> None:
    with workers(tmp_path) as (w1, w2):
        alice, bob = await login(w1), await login(w2)
        lost = await shared_item(alice, bob)
        kept = await shared_item(alice, bob)
        # Bob follows both items on worker 2; alice watches `lost` with an item socket
        # on worker 1.
        watcher = await channel(w1, lost, alice)
        ws, _ = await open_ws(w2.ws, bob.token)
        async with watcher, ws:
            assert (await recv(watcher, TIMEOUT))["event"] == "join"
            assert await subscribe(ws, lost) == subscribed_frame(lost, "writer", 0)
            # The subscriber's own join comes after `subscribed`; it counts alice, who
            # is online on the other worker.
            assert await recv(ws, TIMEOUT) == presence_of(lost, "join", bob.username, 2)
            joined = await recv(watcher, TIMEOUT)
            assert joined == {"type": "presence", "event": "join", "user": bob.username, "count": 2}
            assert await subscribe(ws, kept) == subscribed_frame(kept, "writer", 0)
            r = await rest(w1, "GET", f"/items/{lost}/presence", alice)
            assert r.json() == {"count": 2, "users": sorted([alice.username, bob.username])}

            # Messages stored through either worker reach the subscriptions in order.
            async def post(worker: Worker, who: Session, item: str, n: int) -> None:
                for i in range(n):
                    path = f"/items/{item}/messages"
                    r = await rest(worker, "POST", path, who, json={"data": i})
                    assert r.status_code == 201, r.text

            await asyncio.gather(post(w1, alice, lost, 10), post(w2, bob, kept, 10))
            seqs: dict[str, list[int]] = {lost: [], kept: []}
            while len(seqs[lost]) < 10 or len(seqs[kept]) < 10:
                frame = await recv(ws, TIMEOUT)
                if frame["type"] == "message":
                    seqs[frame["item_id"]].append(frame["seq"])
            assert seqs == {lost: list(range(1, 11)), kept: list(range(1, 11))}

            # Removed through worker 1: that subscription ends on worker 2, alone.
            r = await rest(w1, "DELETE", f"/items/{lost}/members/{bob.username}", alice)
            assert r.status_code == 204
            frames = await read_until(ws, "unsubscribed", TIMEOUT)
            assert frames[-1] == unsubscribed_frame(lost, "forbidden")
            left = await read_until(watcher, lambda f: f["type"] == "presence", TIMEOUT)
            assert left[-1] == {
                "type": "presence",
                "event": "leave",
                "user": bob.username,
                "count": 1,
            }
            await send(ws, "publish", item_id=kept, data="still", ref="k")
            frames = await read_until(ws, lambda f: f.get("ref") == "k", TIMEOUT)
            assert frames[-1] == {"type": "ack", "item_id": kept, "ref": "k", "seq": 11}
            assert [f for f in await ping_barrier(ws) if f.get("item_id") == lost] == []

            # Logout through worker 1 closes the socket on worker 2.
            r = await rest(w1, "POST", "/auth/logout", bob)
            assert r.status_code == 204
            assert await closed(ws, TIMEOUT) == (1008, "session revoked")
