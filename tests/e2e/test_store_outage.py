"""A PostgreSQL outage under a steady publisher: nothing acknowledged is lost.

The database is reached through a TCP proxy the test cuts (every connection dropped,
new ones refused) and restores; the shared PostgreSQL server itself is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.servers import POSTGRES_URL, Backend, LiveServer, postgres_database, settings_for
from tests.support import Api, open_channel, recv

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs TEST_POSTGRES_URL")

RATE = 50.0  # publishes per second
BEFORE = 40  # publishes before the cut
OUTAGE = 3.0  # seconds without a database
AFTER = 40  # acknowledged publishes wanted after the database is back
DEADLINE = 120.0


class CuttableProxy:
    """Forwards a local port to the database; `cut()` drops and refuses, `restore()` heals."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        await asyncio.gather(
            self._pipe(client_r, server_w), self._pipe(server_r, client_w), return_exceptions=True
        )
        for w in (client_w, server_w):
            self._writers.discard(w)
            w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
async def proxied_server(tmp_path: Path) -> AsyncIterator[tuple[LiveServer, CuttableProxy]]:
    with postgres_database() as url:
        parts = urlsplit(url)
        proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        backend = Backend("postgres-memory", "postgres", "memory")
        server = LiveServer(settings_for(backend, through(url, proxy.port), tmp_path))
        await asyncio.to_thread(server.start)
        try:
            yield server, proxy
        finally:
            await proxy.close()
            await proxy.restore()  # let the server's pool close cleanly
            await asyncio.to_thread(server.stop)
            await proxy.close()


async def test_an_outage_loses_no_acknowledged_message(
    proxied_server: tuple[LiveServer, CuttableProxy],
) -> None:
    server, proxy = proxied_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        api = Api(server, http)
        owner = await api.user()
        item = await api.item(owner)
        ws = await open_channel(server, item, owner.token)
        assert (await recv(ws))["type"] == "ready"

        acked: dict[int, int] = {}  # publish index -> seq
        refused: dict[int, str] = {}  # publish index -> error code
        restored = asyncio.Event()
        acked_after: list[int] = []

        async def read() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    acked[int(frame["ref"])] = frame["seq"]
                    if restored.is_set():
                        acked_after.append(frame["seq"])
                elif frame["type"] == "error":
                    refused[int(frame["ref"])] = frame["code"]

        reader = asyncio.create_task(read())
        sent = 0

        async def publish_for(count: int | None, seconds: float | None = None) -> None:
            nonlocal sent
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds if seconds is not None else None
            start = sent
            while (count is None or sent - start < count) and (end is None or loop.time() < end):
                await ws.send(
                    json.dumps({"type": "publish", "data": {"i": sent}, "ref": str(sent)})
                )
                sent += 1
                await asyncio.sleep(1 / RATE)

        try:
            async with asyncio.timeout(DEADLINE):
                await publish_for(BEFORE)
                await proxy.cut()
                await publish_for(None, OUTAGE)
                await proxy.restore()
                restored.set()
                while len(acked_after) < AFTER:
                    await publish_for(1)
                # Every publish answered once: an ack or an error.
                while len(acked) + len(refused) < sent:
                    await asyncio.sleep(0.05)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()

        assert not set(acked) & set(refused)
        assert set(refused.values()) == {"unavailable"}, refused
        assert refused, "the outage was not felt"
        r = await http.get(f"/items/{item}/messages", params={"limit": 1000}, headers=owner.headers)
        assert r.status_code == 200, r.text
        stored: list[dict[str, Any]] = r.json()

    seqs = [m["seq"] for m in stored]
    assert seqs == list(range(1, len(seqs) + 1)), "seqs must be contiguous"
    index_of = {m["seq"]: m["data"]["i"] for m in stored}
    # Acknowledged means stored, as acknowledged.
    for index, seq in acked.items():
        assert index_of.get(seq) == index
    # An unacknowledged publish is stored at most once (and only if its commit raced the cut).
    indexes = [m["data"]["i"] for m in stored]
    assert len(indexes) == len(set(indexes))
    assert set(indexes) - set(acked) <= set(refused)
    assert len(stored) - len(acked) <= 2
