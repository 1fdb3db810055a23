"""A reader that falls behind: the client's buffer is bounded, and nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from api.client import Client
from tests.python_client.conftest import NewClient, until
from tests.servers import LiveServer
from tests.support import FAST

POSTED = 60


async def test_a_channel_left_unread_lets_go_of_its_socket_and_resumes_once_read(
    new_client: NewClient,
) -> None:
    alice = await new_client()
    item = (await alice.create_item("busy"))["id"]
    async with alice.channel(item, max_buffered=10) as channel:
        for n in range(POSTED):
            await alice.post_message(item, n)
        # The channel stops taking messages at its bound and closes its socket.
        await until(lambda: not channel.connected)
        assert 10 <= channel.buffered < POSTED
        published = asyncio.create_task(channel.publish("while behind"))
        seqs: list[int] = []
        async with asyncio.timeout(30):
            async for message in channel:
                seqs.append(message["seq"])
                if message["data"] == "while behind":
                    break
        assert seqs == list(range(1, POSTED + 2))  # each once, in order, none lost
        assert await published == POSTED + 1
        assert channel.reconnects >= 1


async def test_a_multiplexed_socket_left_unread_resumes_every_item_once_read(
    new_client: NewClient,
) -> None:
    alice = await new_client()
    items = [(await alice.create_item(name))["id"] for name in ("a", "b")]
    async with alice.connect(max_buffered=10) as ws:
        for item in items:
            await ws.subscribe(item)
        for n in range(POSTED // 2):
            for item in items:
                await alice.post_message(item, n)
        await until(lambda: not ws.connected)
        assert 10 <= ws.buffered < POSTED + 2
        seqs: dict[str, list[int]] = {item: [] for item in items}
        async with asyncio.timeout(30):
            async for frame in ws:
                if frame["type"] == "message":
                    seqs[frame["item_id"]].append(frame["seq"])
                if all(len(got) == POSTED // 2 for got in seqs.values()):
                    break
        assert seqs == {item: list(range(1, POSTED // 2 + 1)) for item in items}
        assert ws.reconnects >= 1


async def test_without_a_bound_everything_waits_on_one_socket(new_client: NewClient) -> None:
    alice = await new_client()
    item = (await alice.create_item("unbounded"))["id"]
    async with alice.channel(item, max_buffered=None) as channel:
        for n in range(POSTED):
            await alice.post_message(item, n)
        await until(lambda: channel.buffered == POSTED)
        assert channel.connected and channel.reconnects == 0


@pytest.mark.parametrize("bound", [0, -1, True])
async def test_the_bound_must_be_a_positive_integer(server: LiveServer, bound: int) -> None:
    async with Client(server.base_url, backoff=FAST) as client:
        with pytest.raises(ValueError, match="max_buffered"):
            client.channel("x", max_buffered=bound)
        with pytest.raises(ValueError, match="max_buffered"):
            client.connect(max_buffered=bound)
