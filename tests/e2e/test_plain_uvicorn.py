"""The WebSocket server options, as `item-channels serve` sets them and as the README tells
plain `uvicorn api.main:app` to set them (UVICORN_WS_* variables): frames over the limit
are refused from their header, before any payload is read; compression is declined."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api import __main__ as cli
from tests.e2e.test_process import login, new_item
from tests.processes import ROOT, embedded_env, wait_until_healthy
from tests.servers import TEST_SECRET, free_port

LIMIT = 1024
TIMEOUT = 10.0
# What the README's "Running with plain uvicorn" sets.
PLAIN_UVICORN_ENV = {
    "UVICORN_WS": "websockets-sansio",
    "UVICORN_WS_MAX_SIZE": str(LIMIT),
    "UVICORN_WS_PER_MESSAGE_DEFLATE": "false",
}


def test_serve_pins_the_sansio_implementation_and_the_frame_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **options: seen.update(options))
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("MAX_MESSAGE_BYTES", str(LIMIT))
    cli.main(["serve"])
    assert seen["ws"] == "websockets-sansio"
    assert seen["ws_max_size"] == LIMIT
    assert seen["ws_per_message_deflate"] is False


@pytest.fixture(params=["serve", "plain uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = embedded_env(tmp_path, MAX_MESSAGE_BYTES=str(LIMIT))
    if request.param == "serve":
        command = [sys.executable, "-m", "api", "serve", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)]
        env.update(PLAIN_UVICORN_ENV)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, base, log)
        yield base
    finally:
        proc.terminate()
        proc.wait(15)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return head[0] & 0x0F, await reader.readexactly(length)


async def test_a_frame_over_the_limit_is_refused_from_its_header(server: str) -> None:
    _, token, _ = await login(server)
    item = await new_item(server, token)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(server.rsplit(":", 1)[1]))
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /items/{item}/ws?token={token} HTTP/1.1\r\n"
                f"Host: {server.removeprefix('http://')}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            ).encode()
        )
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert response.startswith(b"HTTP/1.1 101"), response
        assert b"permessage-deflate" not in response.lower(), "compression should be declined"
        opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
        assert opcode == 0x1 and b'"ready"' in payload

        # A text frame announcing one byte over the limit, masked as clients must; not one
        # byte of its payload follows, so only a parser that checks the header answers.
        writer.write(bytes([0x81, 0x80 | 126]) + struct.pack("!H", LIMIT + 1) + os.urandom(4))
        await writer.drain()
        while True:  # presence frames may come first
            opcode, payload = await asyncio.wait_for(read_frame(reader), TIMEOUT)
            if opcode == 0x8:
                break
        (code,) = struct.unpack("!H", payload[:2])
        assert code == 1009
    finally:
        writer.close()
