"""The client worker processes, seen from the main process."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench.clients import Reply, worker_main

START_TIMEOUT = 60.0
# Added to every command's own time limit: pipes, pickling, a busy machine.
SLACK = 30.0


class WorkerError(RuntimeError):
    pass


class Pool:
    """`size` worker processes (spawned), each one event loop of clients."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids = itertools.count(1)
        self._workers: list[tuple[BaseProcess, Connection]] = []

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for n in range(self.size):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker_main, args=(theirs,), name=f"bench-client-{n}", daemon=True
            )
            process.start()
            theirs.close()
            self._workers.append((process, ours))
        # Spawned interpreters import their modules first: wait, so no figure includes it.
        for index in range(self.size):
            request_id = next(self._ids)
            self._workers[index][1].send({"op": "ping", "id": request_id})
            self._receive(index, request_id, START_TIMEOUT)

    def stop(self) -> None:
        for process, conn in self._workers:
            if process.is_alive():
                try:
                    conn.send({"op": "exit", "id": 0})
                    if conn.poll(10):
                        conn.recv()
                except (OSError, EOFError):
                    pass
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
            conn.close()
        self._workers.clear()

    def _receive(self, index: int, request_id: int, within: float) -> Reply:
        process, conn = self._workers[index]
        while True:
            try:
                if not conn.poll(within):
                    raise WorkerError(f"client worker {index} did not answer in {within}s")
                reply: Reply = conn.recv()
            except (OSError, EOFError) as exc:
                raise WorkerError(
                    f"client worker {index} is gone (exit code {process.exitcode}): {exc}"
                ) from exc
            if reply.get("id") == request_id:  # older ones answer commands that timed out
                break
        if "error" in reply:
            raise WorkerError(f"client worker {index} failed:\n{reply['error']}")
        return reply

    async def call(self, commands: dict[int, dict[str, Any]], within: float) -> list[Reply]:
        """Send each worker its command at once; their replies, in worker order."""
        pending = []
        for index, command in commands.items():
            request_id = next(self._ids)
            self._workers[index][1].send({**command, "id": request_id})
            pending.append((index, request_id))
        return list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(self._receive, index, request_id, within + SLACK)
                    for index, request_id in pending
                )
            )
        )

    async def each(self, op: str, *, wait: float, **args: Any) -> list[Reply]:
        """The same command to every worker; their replies within `wait` seconds (+ slack)."""
        command = {"op": op, **args}
        return await self.call(dict.fromkeys(range(self.size), command), wait)

    def split(self, n: int) -> list[int]:
        """`n` spread over the workers as evenly as possible."""
        return [n // self.size + (i < n % self.size) for i in range(self.size)]

    async def connect(
        self,
        url: str,
        n: int,
        *,
        concurrency: int,
        within: float,
        slow: bool = False,
        rcvbuf: int = 0,
        mss: int = 0,
        items: tuple[str, ...] = (),
    ) -> Reply:
        """Open `n` subscribers over the workers (on `/ws`, each subscribed to `items`);
        the merged reply."""
        counts = self.split(n) if not slow else [n, *[0] * (self.size - 1)]
        commands = {
            i: {
                "op": "connect",
                "url": url,
                "n": count,
                "concurrency": concurrency,
                "within": within,
                "slow": slow,
                "rcvbuf": rcvbuf,
                "mss": mss,
                "items": items,
            }
            for i, count in enumerate(counts)
            if count
        }
        replies = await self.call(commands, within)
        return {
            "opened": sum(r["opened"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "errors": [e for r in replies for e in r["errors"]][:5],
            "started": min(r["started"] for r in replies),
            "last_ready": max(r["last_ready"] for r in replies),
        }
