"""The service as an operator runs it: its own process, signals, logs, command line."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.processes import ROOT, Worker, embedded_env
from tests.support import PASSWORD, closed, recv, unique

TIMEOUT = 15.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The embedded defaults (SQLite under VAR_DIR, in-memory broker)."""
    return embedded_env(tmp_path)


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    w = Worker(env, tmp_path / "server.log").start()
    try:
        yield w
    finally:
        w.stop()


async def login(base: str, username: str | None = None) -> tuple[str, str, str]:
    """(username, access token, session cookie) of a fresh user."""
    username = username or unique()
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        r = await http.post("/auth/register", json={"username": username, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await http.post("/auth/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return username, r.json()["access_token"], r.cookies["session"]


async def new_item(base: str, token: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        r = await http.post(
            "/items", json={"name": "n"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def stored(base: str, token: str, item: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        r = await http.get(
            f"/items/{item}/messages",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


async def test_sigterm_closes_sockets_with_1012_and_keeps_every_acked_message(
    worker: Worker, env: dict[str, str], tmp_path: Path
) -> None:
    _, token, _ = await login(worker.base)
    item = await new_item(worker.base, token)
    url = f"{worker.ws}/items/{item}/ws?token={token}"
    listener = await connect(url, open_timeout=TIMEOUT)
    publisher = await connect(url, open_timeout=TIMEOUT)
    acked: dict[int, int] = {}

    async def publish_until_closed() -> None:
        n = 0
        try:
            while True:
                await publisher.send(json.dumps({"type": "publish", "data": n, "ref": str(n)}))
                n += 1
                while True:
                    frame = await recv(publisher)
                    if frame["type"] == "ack":
                        acked[frame["seq"]] = int(frame["ref"])
                        break
        except ConnectionClosed:
            return

    pumping = asyncio.create_task(publish_until_closed())
    while len(acked) < 20:
        await asyncio.sleep(0.02)
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    code, _ = await closed(listener, 10)
    assert code == 1012
    await asyncio.wait_for(pumping, 10)
    assert publisher.close_code == 1012
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert worker.proc.wait(15) in (0, -signal.SIGTERM)
    assert "Finished server process" in worker.log.read_text()

    again = Worker(env, tmp_path / "again.log").start()
    try:
        messages = await stored(again.base, token, item)
        by_seq = {m["seq"]: m["data"] for m in messages}
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        for seq, data in acked.items():
            assert by_seq[seq] == data
    finally:
        again.stop()


async def test_acknowledged_messages_survive_kill_9(
    worker: Worker, env: dict[str, str], tmp_path: Path
) -> None:
    _, token, _ = await login(worker.base)
    item = await new_item(worker.base, token)
    async with connect(f"{worker.ws}/items/{item}/ws?token={token}") as ws:
        for n in range(50):
            await ws.send(json.dumps({"type": "publish", "data": {"n": n}, "ref": str(n)}))
        acks = 0
        while acks < 50:
            acks += (await recv(ws))["type"] == "ack"
        worker.kill()
    again = Worker(env, tmp_path / "again.log").start()
    try:
        messages = await stored(again.base, token, item)
        assert [m["data"] for m in messages] == [{"n": n} for n in range(50)]
    finally:
        again.stop()


async def test_no_credential_reaches_the_logs_even_at_trace_level(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "trace.log"
    worker = Worker(env, log, "--log-level", "trace").start()
    secrets: list[str] = []
    try:
        _, token, cookie = await login(worker.base)
        secrets += [token, cookie, PASSWORD]
        item = await new_item(worker.base, token)
        async with httpx.AsyncClient(base_url=worker.base, timeout=TIMEOUT) as http:
            r = await http.post(
                "/auth/ws-ticket", json={}, headers={"Authorization": f"Bearer {token}"}
            )
            ticket = r.json()["token"]
            refreshed = (
                await http.post("/auth/refresh", headers={"Authorization": f"Bearer {token}"})
            ).json()["access_token"]
        secrets += [ticket, refreshed]
        async with connect(f"{worker.ws}/items/{item}/ws?token={ticket}") as ws:
            await recv(ws)
            await ws.send(json.dumps({"type": "refresh", "token": refreshed}))
            await ws.send('{"type":"ping"}')
            while (await recv(ws))["type"] != "pong":
                pass
        async with connect(
            f"{worker.ws}/items/{item}/ws",
            additional_headers={"Cookie": f"session={cookie}"},
            origin=worker.base,  # type: ignore[arg-type]
        ) as ws:
            await recv(ws)
        async with connect(f"{worker.ws}/items/{item}/ws", subprotocols=["bearer", token]) as ws:  # type: ignore[list-item]
            await recv(ws)
        # A refused one too: its URL is logged as well.
        async with connect(f"{worker.ws}/items/{item}/ws?token={token}x") as ws:
            with pytest.raises(ConnectionClosed):
                await recv(ws)
    finally:
        worker.stop()
    text = log.read_text()
    assert "WebSocket /items/" in text and "token=[redacted]" in text  # the lines are there
    for secret in secrets:
        assert secret not in text
        assert secret[:40] not in text


async def test_json_logs_carry_connection_user_and_item(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "json.log"
    worker = Worker({**env, "LOG_JSON": "true"}, log).start()
    try:
        _, token, _ = await login(worker.base)
        item = await new_item(worker.base, token)
        async with connect(f"{worker.ws}/items/{item}/ws?token={token}") as ws:
            await recv(ws)
    finally:
        worker.stop()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    opened = [r for r in records if r["message"] == "channel open"]
    assert len(opened) == 1
    assert opened[0]["item_id"] == item and opened[0]["conn_id"] and opened[0]["user_id"]
    closed = [r for r in records if r["message"] == "channel closed"]
    assert closed and closed[0]["conn_id"] == opened[0]["conn_id"]
    assert token not in log.read_text()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_command_line_migrate_create_user_and_issue_token(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert cli(env, "migrate").returncode == 0
    created = cli(env, "create-user", "operator", "--password", "long enough password")
    assert created.returncode == 0, created.stderr
    assert cli(env, "create-user", "operator", "--password", "x" * 10).returncode != 0
    assert cli(env, "create-user", "bad name", "--password", "x" * 10).returncode != 0
    issued = cli(env, "issue-token", "operator", "--ttl", "120")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert cli(env, "issue-token", "nobody").returncode != 0
    worker = Worker(env, tmp_path / "server.log").start()
    try:
        async with httpx.AsyncClient(base_url=worker.base, timeout=TIMEOUT) as http:
            r = await http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert r.json() == {"id": created.stdout.strip(), "username": "operator"}
    finally:
        worker.stop()
