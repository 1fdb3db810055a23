"""Fixtures for the client's tests: fresh users on a real server, a cuttable TCP path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from api.client import Client
from tests.servers import LiveServer
from tests.support import FAST, PASSWORD, unique

NewClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def new_client(server: LiveServer) -> AsyncIterator[NewClient]:
    """`await new_client()`: a registered, logged-in client of a fresh user."""
    clients: list[Client] = []

    async def make(url: str | None = None, login: bool = True) -> Client:
        client = Client(url or server.base_url, backoff=FAST)
        clients.append(client)
        if login:
            username = unique()
            await client.register(username, PASSWORD)
            await client.login(username, PASSWORD)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def me(client: Client) -> str:
    return (await client.me())["username"]


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    """Wait for `condition` to hold (a sync point, polled)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Proxy:
    """A TCP relay to a server; `cut()` drops every connection through it (a network drop,
    seen by both ends as a connection lost without a close frame)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def pause(self) -> None:
        """Refuse new connections (the open ones stay)."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    def cut(self) -> None:
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def proxy(server: LiveServer) -> AsyncIterator[Proxy]:
    relay = await Proxy(server.port).start()
    yield relay
    await relay.stop()
