"""`publish_many`: a group of payloads in one call, each channel's in order, on every broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from api.realtime.backends import broker_from_url
from api.realtime.broker import Broker
from tests.servers import REDIS_URL

URLS = ["memory://", *([REDIS_URL] if REDIS_URL else [])]


@pytest.fixture(params=URLS, ids=lambda url: url.partition(":")[0])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    b = broker_from_url(request.param)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def test_publish_many_reaches_each_channel_in_order(broker: Broker) -> None:
    a, b, unheard = (f"test-{uuid.uuid4().hex}" for _ in range(3))
    async with broker.subscribe(a) as sub_a, broker.subscribe(b) as sub_b:
        # Redis confirms a subscription asynchronously: wait until one message comes through.
        await _until_heard(broker, a, sub_a)
        await _until_heard(broker, b, sub_b)
        group = [(a, b"a1"), (b, b"b1"), (unheard, b"x"), (a, b"a2"), (a, b"a3"), (b, b"b2")]
        await broker.publish_many(group)
        assert await _take(sub_a, 3) == [b"a1", b"a2", b"a3"]
        assert await _take(sub_b, 2) == [b"b1", b"b2"]


async def _until_heard(broker: Broker, channel: str, sub: object) -> None:
    async with asyncio.timeout(10):
        while True:
            await broker.publish(channel, b"probe")
            try:
                async with asyncio.timeout(0.2):
                    await _take(sub, 1)
            except TimeoutError:
                continue
            # Drain further probes that may still be on the way.
            while True:
                try:
                    async with asyncio.timeout(0.2):
                        await _take(sub, 1)
                except TimeoutError:
                    return


async def _take(sub: object, n: int) -> list[bytes]:
    iterator = sub.__aiter__()  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        return [await iterator.__anext__() for _ in range(n)]


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis")
async def test_a_group_goes_through_after_redis_forgot_the_script() -> None:
    # Redis keeps scripts only until it restarts (or is told to flush them).
    broker = broker_from_url(REDIS_URL)
    await broker.start()
    try:
        channel = f"test-{uuid.uuid4().hex}"
        async with broker.subscribe(channel) as sub:
            await _until_heard(broker, channel, sub)
            await broker.publish_many([(channel, b"1")])
            assert broker.client is not None  # type: ignore[attr-defined]
            await broker.client.script_flush()  # type: ignore[attr-defined]
            await broker.publish_many([(channel, b"2"), (channel, b"3")])
            assert await _take(sub, 3) == [b"1", b"2", b"3"]
    finally:
        await broker.close()
