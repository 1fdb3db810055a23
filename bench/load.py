"""The publish scenario's load in one client process: publishing sockets or REST calls.

Over WebSocket, each socket keeps up to `window` publishes unacknowledged; over REST,
each keep-alive connection makes one request at a time. A message counts once its `ack`
(or 201) arrived, and the acknowledged seqs are returned for checking. With `change`,
the sockets send state changes (`patch` frames setting `/d` to what a publish would
carry) instead, and the acknowledged versions are returned in place of seqs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from bench.httpclient import KeepAlive
from bench.wsclient import open_client

Reply = dict[str, Any]


@dataclass(eq=False)
class Publisher:
    """One publishing socket (on one item) or REST connection."""

    item_id: str = ""
    ws: ClientConnection | None = None
    http: KeepAlive | None = None


@dataclass(eq=False)
class Tally:
    """What the publishers got back."""

    seqs: list[tuple[str, int]] = field(default_factory=list)
    errors: int = 0
    error_sample: str = ""
    finished: float = 0.0

    def ok(self, item_id: str, seq: int) -> None:
        self.seqs.append((item_id, seq))
        self.finished = time.time()

    def error(self, sample: str) -> None:
        self.errors += 1
        self.error_sample = self.error_sample or sample[:300]
        self.finished = time.time()


class Load:
    def __init__(self) -> None:
        self.publishers: list[Publisher] = []

    async def open(
        self,
        mode: str,
        host: str,
        port: int,
        urls: dict[str, str],
        token: str | None,
        connections: int,
        within: float,
        copies: int = 1,
    ) -> Reply:
        """Open `copies` publishing sockets per item in `urls`, or `connections` REST
        connections."""
        async with asyncio.timeout(within):
            if mode == "ws":
                for item_id, url in urls.items():
                    for _ in range(copies):
                        ws, _ = await open_client(url, within)
                        self.publishers.append(Publisher(item_id, ws=ws))
            else:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                for _ in range(connections):
                    http = KeepAlive(host, port, headers)
                    await http.open()
                    self.publishers.append(Publisher(http=http))
        return {"open": len(self.publishers)}

    async def run(
        self,
        total: int,
        window: int,
        items: list[str],
        within: float,
        change: bool = False,
        pad: int = 0,
    ) -> Reply:
        """Publish `total` messages (or state changes) over the open publishers, `window`
        unacknowledged at most per socket (REST: one per connection); count the
        acknowledged ones. `pad` characters of padding go into each message's data."""
        tally = Tally()
        started = time.time()
        pubs = self.publishers
        if pubs and pubs[0].ws is not None:
            shares = [total // len(pubs) + (n < total % len(pubs)) for n in range(len(pubs))]
            jobs = [
                self._publish_ws(p, k, window, tally, change, "x" * pad)
                for p, k in zip(pubs, shares, strict=True)
            ]
        else:
            turns = iter(range(total))
            jobs = [self._publish_rest(p, turns, items, tally) for p in pubs]
        tasks = [asyncio.create_task(job) for job in jobs]
        late: set[asyncio.Task[None]] = set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=within)
        for task in late:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                tally.error(repr(task.exception()))
        return {
            "acked": len(tally.seqs),
            "errors": tally.errors,
            "error_sample": tally.error_sample,
            "timed_out": len(late),
            "started": started,
            "finished": tally.finished or time.time(),
            "seqs": tally.seqs,
        }

    @staticmethod
    async def _publish_ws(
        pub: Publisher, count: int, window: int, tally: Tally, change: bool, pad: str
    ) -> None:
        ws = pub.ws
        assert ws is not None
        if count == 0:
            return
        room = asyncio.Semaphore(window)
        answered = 0
        done = asyncio.Event()

        async def read() -> None:
            nonlocal answered
            async for text in ws:
                frame = orjson.loads(text)
                kind = frame.get("type")
                if kind == "ack":
                    tally.ok(pub.item_id, frame["version"] if change else frame["seq"])
                elif kind == "error":
                    tally.error(str(text))
                else:
                    continue
                answered += 1
                room.release()
                if answered == count:
                    done.set()
                    return

        reader = asyncio.create_task(read())
        try:
            for i in range(count):
                await room.acquire()
                data: dict[str, Any] = {"i": i, "t": time.time()}
                if pad:
                    data["pad"] = pad
                frame: dict[str, Any]
                if change:
                    ops = [{"op": "add", "path": "/d", "value": data}]
                    frame = {"type": "patch", "ops": ops, "ref": str(i)}
                else:
                    frame = {"type": "publish", "data": data, "ref": str(i)}
                await ws.send(orjson.dumps(frame).decode())
            await done.wait()
        finally:
            reader.cancel()

    @staticmethod
    async def _publish_rest(
        pub: Publisher, turns: Iterator[int], items: list[str], tally: Tally
    ) -> None:
        http = pub.http
        assert http is not None
        for n in turns:  # shared by the connections of this worker
            item_id = items[n % len(items)]
            body = orjson.dumps({"data": {"i": n, "t": time.time()}})
            status, answer = await http.post_json(f"/items/{item_id}/messages", body)
            if status == 201:
                tally.ok(item_id, orjson.loads(answer)["seq"])
            else:
                tally.error(f"{status} {answer[:200]!r}")

    async def close(self, within: float) -> Reply:
        publishers, self.publishers = self.publishers, []
        jobs: list[asyncio.Task[None]] = []
        for pub in publishers:
            if pub.ws is not None:
                jobs.append(asyncio.create_task(pub.ws.close()))
            elif pub.http is not None:
                jobs.append(asyncio.create_task(pub.http.close()))
        if jobs:
            _, late = await asyncio.wait(jobs, timeout=within)
            for task in late:
                task.cancel()
        for pub in publishers:
            if pub.ws is not None and pub.ws.transport is not None:
                pub.ws.transport.abort()
        return {"closed": len(publishers)}
