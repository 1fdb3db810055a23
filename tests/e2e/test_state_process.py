"""Item state in the service's own process: acknowledged changes survive `kill -9`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.e2e.test_process import TIMEOUT, env, login, new_item, worker
from tests.processes import Worker
from tests.support import recv

__all__ = ["env", "worker"]  # fixtures


async def test_acknowledged_state_changes_survive_kill_9(
    worker: Worker, env: dict[str, str], tmp_path: Path
) -> None:
    _, token, _ = await login(worker.base)
    item = await new_item(worker.base, token)
    async with connect(f"{worker.ws}/items/{item}/ws?token={token}") as ws:
        assert (await recv(ws))["type"] == "ready"
        ops = [{"op": "add", "path": "/log", "value": []}]
        await ws.send(json.dumps({"type": "patch", "ops": ops, "ref": "init"}))
        for n in range(50):
            ops = [{"op": "add", "path": "/log/-", "value": n}]
            await ws.send(json.dumps({"type": "patch", "ops": ops, "ref": str(n)}))
        versions = []
        while len(versions) < 51:
            frame = await recv(ws)
            assert frame["type"] != "error", frame
            if frame["type"] == "ack":
                versions.append(frame["version"])
        assert versions == list(range(1, 52))
        worker.kill()
    again = Worker(env, tmp_path / "again.log").start()
    try:
        async with httpx.AsyncClient(base_url=again.base, timeout=TIMEOUT) as http:
            r = await http.get(f"/items/{item}/state", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 51
        assert r.json()["state"] == {"log": list(range(50))}
    finally:
        again.stop()
