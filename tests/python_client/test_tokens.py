"""Short-lived tokens: refreshed on open sockets, renewed from the session after expiry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from api.client import ChannelRefused, Client
from api.client.channel import Channel
from tests.python_client.conftest import FAST, until
from tests.servers import LiveServer
from tests.support import PASSWORD, unique

TTL = 3  # seconds: ACCESS_TOKEN_TTL of these tests' server


@pytest.fixture
def short_lived(
    make_server: Callable[..., AbstractContextManager[LiveServer]],
) -> Iterator[LiveServer]:
    with make_server(access_token_ttl=TTL) as server:
        yield server


async def logged_in(server: LiveServer) -> Client:
    client = Client(server.base_url, backoff=FAST)
    name = unique()
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    return client


def expiry(token: str | None) -> float:
    from api.client.refresh import claims_of

    assert token is not None
    return float(claims_of(token)["exp"])


async def take_one(channel: Channel) -> Any:
    async with asyncio.timeout(20):
        async for message in channel:
            return message
    raise AssertionError("the channel ended")


async def test_an_open_channel_outlives_its_token_by_sending_refresh_frames(
    short_lived: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await logged_in(short_lived) as alice:
        item = (await alice.create_item("x"))["id"]
        async with alice.channel(item) as channel:
            first_token = alice.token
            # Past the first token's expiry, and the one after it.
            deadline = expiry(first_token) + TTL + 0.5
            await until(lambda: time.time() > deadline, timeout=TTL * 5)
            seq = await channel.publish("still open")
            message = await take_one(channel)
            # Had no refresh frame been accepted, the server would have closed the socket
            # with `token expired` and the client would have reconnected.
            assert channel.reconnects == 0
    assert alice.token != first_token
    assert (message["seq"], message["data"]) == (seq, "still open")
    # websockets' debug log showed the handshake and the refresh frames, tokens redacted.
    assert "> Authorization: [redacted]" in caplog.text
    assert "[a frame with a credential, redacted]" in caplog.text
    assert first_token is not None and first_token not in caplog.text
    assert '"token"' not in caplog.text


def no_refresh_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    async def idle(*args: object) -> None:
        return None

    monkeypatch.setattr("api.client.sockets.keep_token_fresh", idle)


async def test_token_expired_close_with_a_session_renews_and_resumes(
    short_lived: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_refresh_frames(monkeypatch)
    async with await logged_in(short_lived) as alice:
        item = (await alice.create_item("x"))["id"]
        async with alice.channel(item, since=0) as channel:
            await alice.post_message(item, "before")
            await until(lambda: channel.reconnects >= 1, timeout=TTL * 5)
            await alice.post_message(item, "after")
            got = [await take_one(channel), await take_one(channel)]
    assert [(m["seq"], m["data"]) for m in got] == [(1, "before"), (2, "after")]


async def test_token_expired_without_a_session_is_refused(
    short_lived: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_refresh_frames(monkeypatch)
    async with await logged_in(short_lived) as alice:
        item = (await alice.create_item("x"))["id"]
        async with Client(short_lived.base_url, token=alice.token, backoff=FAST) as bare:
            assert not bare.tokens.has_session
            async with bare.channel(item) as channel:
                with pytest.raises(ChannelRefused) as closed:
                    await take_one(channel)
                assert channel.reconnects == 0
    assert (closed.value.code, closed.value.reason) == (1008, "token expired")


async def test_rest_calls_renew_an_expired_token_from_the_session(
    short_lived: LiveServer,
) -> None:
    async with await logged_in(short_lived) as alice:
        first = alice.token
        await until(lambda: time.time() > expiry(first) + 0.2, timeout=TTL * 5)
        assert (await alice.me())["username"]
        assert alice.token != first
