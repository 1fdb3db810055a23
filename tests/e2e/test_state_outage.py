"""A PostgreSQL outage under a steady stream of state changes: every change is answered
(`ack` or `unavailable`, 503 over REST), nothing acknowledged is lost, versions stay
contiguous.

The database is reached through the TCP proxy of `test_store_outage`, cut and restored
while a socket keeps patching its document; the shared server itself is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest

from tests.e2e.test_store_outage import CuttableProxy, proxied_server
from tests.servers import POSTGRES_URL, LiveServer
from tests.support import Api, open_channel, recv

__all__ = ["proxied_server"]  # fixture

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs TEST_POSTGRES_URL")

RATE = 50.0  # changes per second
BEFORE = 40  # changes before the cut
OUTAGE = 3.0  # seconds without a database
AFTER = 40  # acknowledged changes wanted after the database is back
DEADLINE = 120.0


async def test_an_outage_loses_no_acknowledged_state_change(
    proxied_server: tuple[LiveServer, CuttableProxy],
) -> None:
    server, proxy = proxied_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        api = Api(server, http)
        owner = await api.user()
        item = await api.item(owner)
        r = await http.post(
            f"/items/{item}/state",
            json={"ops": [{"op": "add", "path": "/log", "value": []}]},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text
        ws = await open_channel(server, item, owner.token)
        assert (await recv(ws))["type"] == "ready"

        acked: dict[int, int] = {}  # change index -> version
        refused: dict[int, str] = {}  # change index -> error code
        restored = asyncio.Event()
        acked_after: list[int] = []

        async def read() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "ack":
                    acked[int(frame["ref"])] = frame["version"]
                    if restored.is_set():
                        acked_after.append(frame["version"])
                elif frame["type"] == "error":
                    refused[int(frame["ref"])] = frame["code"]

        reader = asyncio.create_task(read())
        sent = 0

        async def change_for(count: int | None, seconds: float | None = None) -> None:
            nonlocal sent
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds if seconds is not None else None
            start = sent
            while (count is None or sent - start < count) and (end is None or loop.time() < end):
                ops = [{"op": "add", "path": "/log/-", "value": sent}]
                await ws.send(json.dumps({"type": "patch", "ops": ops, "ref": str(sent)}))
                sent += 1
                await asyncio.sleep(1 / RATE)

        try:
            async with asyncio.timeout(DEADLINE):
                await change_for(BEFORE)
                await proxy.cut()
                await change_for(None, OUTAGE)
                # Over REST too: 503, nothing stored.
                r = await http.post(
                    f"/items/{item}/state",
                    json={"ops": [{"op": "add", "path": "/rest", "value": True}]},
                    headers=owner.headers,
                )
                assert r.status_code == 503, r.text
                await proxy.restore()
                restored.set()
                while len(acked_after) < AFTER:
                    await change_for(1)
                # Every change answered once: an ack or an error.
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
        r = await http.get(f"/items/{item}/state", headers=owner.headers)
        assert r.status_code == 200, r.text
        stored: dict[str, Any] = r.json()

    assert "rest" not in stored["state"]
    log: list[int] = stored["state"]["log"]
    # Version 1 made the log; each later version appended one entry, in version order.
    assert stored["version"] == 1 + len(log)
    # Acknowledged means stored, as acknowledged: change i at version v is entry v - 2.
    for index, version in acked.items():
        assert log[version - 2] == index
    assert len(set(acked.values())) == len(acked)
    # An unacknowledged change is stored at most once (only if its commit raced the cut).
    assert len(log) == len(set(log))
    assert set(log) - set(acked) <= set(refused)
    assert len(log) - len(acked) <= 2
