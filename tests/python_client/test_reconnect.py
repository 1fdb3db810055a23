"""Drops, restarts and refused reconnects: every message once, in order, and publishes wait."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.client import Client, Message
from tests.processes import Worker, embedded_env
from tests.python_client.conftest import FAST, NewClient, Proxy, me, until
from tests.servers import free_port
from tests.support import PASSWORD, unique


async def collect(channel: object, last: int) -> list[Message]:
    """Messages until one with `seq >= last`, across as many loops as reconnects need."""
    got: list[Message] = []
    async with asyncio.timeout(60):
        async for message in channel:  # type: ignore[attr-defined]
            got.append(message)
            if message["seq"] >= last:
                return got
    raise AssertionError("the channel ended")


async def test_network_drops_resume_without_gap_or_duplicate(
    new_client: NewClient, proxy: Proxy
) -> None:
    writer = await new_client()
    listener = await new_client(proxy.url)
    item = (await writer.create_item("x"))["id"]
    await writer.add_member(item, await me(listener), "reader")
    total = 300

    async def publish_and_cut() -> None:
        for n in range(total):
            await writer.post_message(item, n)
            if n % 60 == 30:
                proxy.cut()

    async with listener.channel(item, since=0) as channel:
        publishing = asyncio.create_task(publish_and_cut())
        got = await collect(channel, total)
        await publishing
        assert channel.reconnects >= 1
    assert [m["seq"] for m in got] == list(range(1, total + 1))
    assert [m["data"] for m in got] == list(range(total))


async def test_a_publish_during_a_drop_waits_for_the_reconnect(
    new_client: NewClient, proxy: Proxy
) -> None:
    alice = await new_client(proxy.url)
    item = (await alice.create_item("x"))["id"]
    async with alice.channel(item) as channel:
        await proxy.pause()
        proxy.cut()
        await until(lambda: not channel.connected)
        pending = asyncio.create_task(channel.publish("while down", timeout=30))
        await asyncio.sleep(0.3)  # it is waiting, not failing
        assert not pending.done()
        await proxy.resume()
        seq = await pending
        [message] = await collect(channel, seq)
    assert (message["seq"], message["data"]) == (1, "while down")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return embedded_env(tmp_path)


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    w = Worker(env, tmp_path / "server.log").start()
    try:
        yield w
    finally:
        w.stop()


async def test_server_restart_resumes_without_gap_or_duplicate(
    worker: Worker, env: dict[str, str], tmp_path: Path
) -> None:
    async with Client(worker.base, backoff=FAST) as alice:
        name = unique()
        await alice.register(name, PASSWORD)
        await alice.login(name, PASSWORD)
        item = (await alice.create_item("x"))["id"]
        async with alice.channel(item, since=0) as channel:
            for n in range(50):
                await alice.post_message(item, n)
            first = await collect(channel, 20)
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            worker.proc.wait(15)
            await until(lambda: not channel.connected)
            # Published while the server is down: waits for it to come back.
            pending = asyncio.create_task(channel.publish("across the restart", timeout=60))
            again = Worker(env, tmp_path / "again.log", port=worker.port).start()
            try:
                seq = await pending
                assert seq == 51
                for n in range(52, 101):
                    await alice.post_message(item, n)
                rest = await collect(channel, 100)
                assert channel.reconnects >= 1
            finally:
                again.stop()
    got = first + rest
    assert [m["seq"] for m in got] == list(range(1, 101))
    assert got[50]["data"] == "across the restart"


async def test_a_channel_waits_for_a_server_that_is_not_up_yet(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    worker = Worker(env, tmp_path / "late.log", port=port).start()
    async with Client(worker.base, backoff=FAST) as alice:
        name = unique()
        await alice.register(name, PASSWORD)
        await alice.login(name, PASSWORD)
        item = (await alice.create_item("x"))["id"]
        worker.stop()
        opening = asyncio.create_task(alice.channel(item, since=0).__aenter__())
        await asyncio.sleep(0.5)  # connection refused meanwhile: retried
        assert not opening.done()
        again = Worker(env, tmp_path / "again.log", port=port).start()
        try:
            channel = await asyncio.wait_for(opening, 30)
            try:
                seq = await channel.publish("up")
                assert seq == 1
            finally:
                await channel.close()
        finally:
            again.stop()
