"""Client worker processes: real `websockets` clients, driven over a pipe.

Each worker runs one event loop holding many subscriber sockets (and, for the publish
scenario, publisher sockets or REST connections). The main process sends commands as
dicts and gets one reply per command:

- `connect`: open sockets, each counted once its first frame (`ready`) arrived;
- `arm` / `collect`: start and finish a phase: each subscriber checks the `message`
  frames of the phase (the publisher numbers them 0, 1, … in `data.i` and stamps its send
  time in `data.t`) for loss, duplicates and order, and records publish→receipt latency;
- `stall`: slow subscribers stop reading (or read again);
- `load_open` / `load_run` / `load_close`: the publish scenario's publishers (`load.py`);
- `close`, `exit`.

Every wait is bounded by a time limit (`within`, seconds) given in the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from array import array
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import orjson

from bench.load import Load
from bench.servers import raise_nofile
from bench.wsclient import Subscription, subscribe

Reply = dict[str, Any]
MAX_ERRORS = 5
SOCKET_TIMEOUT = 30.0
DUPLICATE_GRACE = 0.2


@dataclass(eq=False)
class Subscriber:
    conn: Subscription
    slow: bool = False
    count: int = 0
    prev_seq: int = 0
    seen: bytearray = field(default_factory=bytearray)
    # `/ws`: subscriptions asked for and not answered yet, and who waits for them.
    unanswered: int = 0
    answered: asyncio.Future[None] | None = None

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code


@dataclass(eq=False)
class Phase:
    name: str
    target: int
    pending: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    dup: int = 0
    ooo: int = 0
    stray: int = 0
    slow_received: int = 0
    first: float = float("inf")
    last: float = 0.0


class Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.subs: list[Subscriber] = []
        self.phase: Phase | None = None
        self.load = Load()

    async def serve(self) -> None:
        while True:
            command: dict[str, Any] = await asyncio.to_thread(self.conn.recv)
            op = command.pop("op")
            request_id = command.pop("id")
            if op == "exit":
                await self.close(within=5)
                self.conn.send({"id": request_id})
                return
            try:
                reply = await getattr(self, op)(**command)
            except Exception:
                reply = {"error": traceback.format_exc()}
            reply["id"] = request_id
            reply["cpu"] = time.process_time()  # this client process's CPU time so far
            self.conn.send(reply)

    async def ping(self) -> Reply:
        return {}

    # Subscribers.

    async def connect(
        self,
        url: str,
        n: int,
        concurrency: int,
        within: float,
        slow: bool = False,
        rcvbuf: int = 0,
        mss: int = 0,
        items: tuple[str, ...] = (),
    ) -> Reply:
        """Open `n` subscribers, `concurrency` handshakes at a time, within `within` seconds;
        on `/ws`, each then subscribes to `items` before it counts as open."""
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        stamps: list[float] = []
        started = time.time()

        async def one() -> None:
            async with gate:
                try:
                    conn, first = await subscribe(
                        url, min(within, SOCKET_TIMEOUT), rcvbuf=rcvbuf, mss=mss
                    )
                    kind = orjson.loads(first).get("type")
                    if kind != "ready":
                        conn.abort()
                        raise RuntimeError(f"first frame is {first[:200]!r}")
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
                sub = Subscriber(conn, slow=slow)
                conn.on_text = partial(self._on_text, sub)
                if items:
                    try:
                        await self._subscribe(sub, items, min(within, SOCKET_TIMEOUT))
                    except Exception as exc:
                        conn.abort()
                        errors.append(f"{type(exc).__name__}: {exc}"[:300])
                        return
                stamps.append(time.time())
                self.subs.append(sub)

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        _, late = await asyncio.wait(tasks, timeout=within)
        for task in late:
            task.cancel()
        return {
            "opened": len(stamps),
            "failed": n - len(stamps),
            "errors": errors[:MAX_ERRORS],
            "started": started,
            "last_ready": max(stamps, default=started),
            "open": len(self.subs),
        }

    async def _subscribe(self, sub: Subscriber, items: tuple[str, ...], within: float) -> None:
        """Subscribe an open `/ws` socket to `items`; back once every one is answered."""
        sub.answered = asyncio.get_running_loop().create_future()
        sub.unanswered = len(items)
        for item_id in items:
            sub.conn.send_text(orjson.dumps({"type": "subscribe", "item_id": item_id}).decode())
        try:
            await asyncio.wait_for(sub.answered, within)
        finally:
            sub.answered = None

    async def subscribe(self, items: list[str], concurrency: int, within: float) -> Reply:
        """Subscribe every open `/ws` socket to `items` as well."""
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(sub: Subscriber) -> None:
            async with gate:
                try:
                    await self._subscribe(sub, tuple(items), min(within, SOCKET_TIMEOUT))
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])

        await asyncio.wait_for(asyncio.gather(*(one(s) for s in self.subs)), within)
        return {
            "subscribed": len(self.subs) - len(errors),
            "failed": len(errors),
            "errors": errors[:MAX_ERRORS],
        }

    def _answered(self, sub: Subscriber, frame: dict[str, Any]) -> None:
        answered = sub.answered
        if answered is None or answered.done():
            return
        if frame.get("type") == "error":
            answered.set_exception(RuntimeError(f"subscribe refused: {frame}"))
            return
        sub.unanswered -= 1
        if sub.unanswered == 0:
            answered.set_result(None)

    def _on_text(self, sub: Subscriber, text: bytes) -> None:
        frame = orjson.loads(text)
        kind = frame.get("type")
        if kind == "subscribed" or (kind == "error" and sub.answered is not None):
            self._answered(sub, frame)
        elif kind == "message":
            self._on_message(sub, frame, time.time())
        elif kind == "batch":
            now = time.time()
            for one in frame["frames"]:
                if one.get("type") == "message":
                    self._on_message(sub, one, now)

    def _on_message(self, sub: Subscriber, frame: dict[str, Any], now: float) -> None:
        phase = self.phase
        data = frame.get("data")
        if phase is None or not isinstance(data, dict) or data.get("p") != phase.name:
            if phase is not None:
                phase.stray += 1
            return
        if sub.slow:
            phase.slow_received += 1
            return
        i = data["i"]
        seen = sub.seen
        if i >= len(seen):
            phase.stray += 1
            return
        if seen[i]:
            phase.dup += 1
            return
        seen[i] = 1
        seq = frame["seq"]
        if seq < sub.prev_seq:
            phase.ooo += 1
        else:
            sub.prev_seq = seq
        phase.latencies.append(now - data["t"])
        if now < phase.first:
            phase.first = now
        phase.last = now
        sub.count += 1
        if sub.count == phase.target:
            phase.pending -= 1
            if phase.pending == 0:
                phase.done.set()

    async def arm(self, name: str, limit: int) -> Reply:
        normal = [s for s in self.subs if not s.slow]
        for sub in normal:
            sub.seen = bytearray(limit)
            sub.count = 0
            sub.prev_seq = 0
        self.phase = Phase(name, limit, len(normal))
        if not normal:
            self.phase.done.set()
        return {"armed": len(normal)}

    async def collect(self, sent: int, refused: int, within: float, idle: float) -> Reply:
        """Wait until every subscriber has the messages of the phase (`sent` published,
        `refused` of them answered with an error and never stored): at most `within`
        seconds, and no more than `idle` seconds once nothing arrives any more."""
        phase = self.phase
        assert phase is not None
        normal = [s for s in self.subs if not s.slow]
        expected = sent - refused
        phase.target = expected
        phase.pending = sum(1 for s in normal if s.count < expected)
        deadline = time.monotonic() + within
        if phase.pending:
            phase.done.clear()
            while not phase.done.is_set() and time.monotonic() < deadline:
                before = phase.last
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(phase.done.wait(), min(idle, within))
                if phase.last == before and not phase.done.is_set():
                    break  # nothing arrived for `idle` seconds: the server is stuck
        await asyncio.sleep(DUPLICATE_GRACE)  # a duplicate right behind the last frame
        self.phase = None
        slow = [s for s in self.subs if s.slow]
        return {
            "sockets": len(normal),
            "received": sum(s.count for s in normal),
            "lost": sum(max(0, expected - s.count) for s in normal),
            "dup": phase.dup,
            "ooo": phase.ooo,
            "stray": phase.stray,
            "first": phase.first,
            "last": phase.last,
            "latencies": phase.latencies.tobytes(),
            "closed": sum(1 for s in normal if s.close_code is not None),
            "slow_received": phase.slow_received,
            "slow_close_codes": [s.close_code for s in slow],
        }

    async def stall(self, on: bool) -> Reply:
        """Slow subscribers stop reading from their sockets (`on`), or read again."""
        slow = [s for s in self.subs if s.slow]
        for sub in slow:
            if on:
                sub.conn.pause()
            else:
                sub.conn.resume()
        return {"slow": len(slow)}

    async def close(self, within: float) -> Reply:
        subs, self.subs = self.subs, []
        if subs:
            closing = [asyncio.create_task(s.conn.close()) for s in subs]
            _, late = await asyncio.wait(closing, timeout=within)
            for task in late:
                task.cancel()
        for sub in subs:
            sub.conn.abort()
        return {"closed": len(subs)}

    # Publishers (publish scenario).

    async def load_open(self, **args: Any) -> Reply:
        return await self.load.open(**args)

    async def load_run(self, **args: Any) -> Reply:
        return await self.load.run(**args)

    async def load_close(self, within: float) -> Reply:
        return await self.load.close(within)


def run_loop(main: Any) -> None:
    """Run a coroutine on uvloop when it is installed (cheaper clients), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def worker_main(conn: Connection) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    raise_nofile()
    run_loop(Worker(conn).serve())
