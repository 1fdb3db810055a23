"""Every broker keeps the same promises: one suite, run on memory and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from api.realtime.backends import broker_from_url
from api.realtime.broker import Broker, Subscription
from tests.realtime.backends import BACKEND_URLS

TIMEOUT = 5.0


@pytest.fixture(params=BACKEND_URLS)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    broker = broker_from_url(request.param)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


def channel() -> str:
    return f"contract:{uuid.uuid4().hex}"


async def take(sub: Subscription, count: int) -> list[bytes]:
    received: list[bytes] = []
    async with asyncio.timeout(TIMEOUT):
        async for payload in sub:
            received.append(payload)
            if len(received) == count:
                return received
    return received


async def test_payloads_arrive_in_publish_order(broker: Broker) -> None:
    name = channel()
    async with broker.subscribe(name) as sub:
        for n in range(100):
            await broker.publish(name, b"%d" % n)
        assert await take(sub, 100) == [b"%d" % n for n in range(100)]


async def test_every_subscriber_gets_every_payload(broker: Broker) -> None:
    name = channel()
    async with broker.subscribe(name) as one, broker.subscribe(name) as two:
        await broker.publish(name, b"x")
        await broker.publish(name, b"y")
        assert await take(one, 2) == [b"x", b"y"]
        assert await take(two, 2) == [b"x", b"y"]


async def test_channels_are_separate(broker: Broker) -> None:
    first, second = channel(), channel()
    async with broker.subscribe(first) as sub:
        await broker.publish(second, b"elsewhere")
        await broker.publish(first, b"here")
        assert await take(sub, 1) == [b"here"]


async def test_a_payload_is_delivered_as_bytes_unchanged(broker: Broker) -> None:
    name = channel()
    payload = '1 2.5\n{"data":"é\\u0000"}'.encode() + bytes(range(256))
    async with broker.subscribe(name) as sub:
        await broker.publish(name, payload)
        assert await take(sub, 1) == [payload]


async def test_nothing_published_before_subscribing_arrives(broker: Broker) -> None:
    name = channel()
    await broker.publish(name, b"early")
    async with broker.subscribe(name) as sub:
        await broker.publish(name, b"late")
        assert await take(sub, 1) == [b"late"]


async def test_a_closed_subscription_can_be_opened_again(broker: Broker) -> None:
    name = channel()
    async with broker.subscribe(name) as sub:
        await broker.publish(name, b"1")
        assert await take(sub, 1) == [b"1"]
    async with broker.subscribe(name) as sub:
        await broker.publish(name, b"2")
        assert await take(sub, 1) == [b"2"]


async def test_ping_answers(broker: Broker) -> None:
    await broker.ping()
