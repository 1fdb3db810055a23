"""1008 refusals and closes surface as `ChannelRefused(.code, .reason)`, never retried."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from api.client import ChannelRefused, Client, PublishError
from tests.python_client.conftest import FAST, NewClient, me
from tests.servers import LiveServer
from tests.tokens import claims_of, sign


async def refusal(client: Client, item_id: str) -> ChannelRefused:
    with pytest.raises(ChannelRefused) as refused:
        async with asyncio.timeout(20), client.channel(item_id):
            pass
    return refused.value


def resigned(token: str, **changes: Any) -> str:
    """The token's claims with `changes`, signed with the test server's key."""
    return sign({**claims_of(token), **changes})


async def test_each_handshake_refusal_names_its_reason(
    server: LiveServer, new_client: NewClient
) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("x"))["id"]
    assert alice.token is not None

    async with Client(server.base_url, backoff=FAST) as nobody:
        missing = await refusal(nobody, item)
    async with Client(server.base_url, token="not-a-jwt", backoff=FAST) as forged:
        invalid = await refusal(forged, item)
    expired_token = resigned(alice.token, exp=int(time.time()) - 5)
    async with Client(server.base_url, token=expired_token, backoff=FAST) as late:
        expired = await refusal(late, item)
    forbidden = await refusal(bob, item)
    stale = alice.token
    await alice.logout()
    async with Client(server.base_url, token=stale, backoff=FAST) as revoked:
        session = await refusal(revoked, item)

    assert [(r.code, r.reason) for r in (missing, invalid, expired, forbidden, session)] == [
        (1008, "missing credentials"),
        (1008, "invalid token"),
        (1008, "token expired"),
        (1008, "forbidden"),
        (1008, "invalid session"),
    ]


async def test_a_used_ticket_is_refused_and_not_retried(
    server: LiveServer, new_client: NewClient
) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    ticket = (await alice.ws_ticket(item))["token"]
    async with Client(server.base_url, token=ticket, backoff=FAST) as once:
        async with once.channel(item) as channel:
            assert channel.ready is not None
        # The same ticket again: refused, whatever the backoff would allow.
        again = await refusal(once, item)
    assert (again.code, again.reason) == (1008, "invalid token")


async def test_removal_while_open_ends_iteration_and_publish_with_forbidden(
    new_client: NewClient,
) -> None:
    alice, bob = await new_client(), await new_client()
    item = (await alice.create_item("x"))["id"]
    await alice.add_member(item, await me(bob), "writer")
    async with bob.channel(item) as channel:
        await alice.post_message(item, "before")
        await alice.remove_member(item, await me(bob))
        received = []
        with pytest.raises(ChannelRefused) as closed:
            async with asyncio.timeout(20):
                async for message in channel:
                    received.append(message["data"])
        # Later reads and publishes see the same refusal; nothing reconnected.
        with pytest.raises(ChannelRefused):
            await channel.__anext__()
        with pytest.raises(ChannelRefused):
            await channel.publish("after")
        assert channel.reconnects == 0
    assert (closed.value.code, closed.value.reason) == (1008, "forbidden")
    assert received == ["before"]


async def test_logout_closes_open_channels_with_session_revoked(new_client: NewClient) -> None:
    alice = await new_client()
    item = (await alice.create_item("x"))["id"]
    async with alice.channel(item) as channel:
        await alice.logout()
        with pytest.raises(ChannelRefused) as closed:
            async with asyncio.timeout(20):
                async for _ in channel:
                    pass
        with pytest.raises((ChannelRefused, PublishError)):
            await channel.publish("x")
    assert (closed.value.code, closed.value.reason) == (1008, "session revoked")
