"""An asyncio client of Item Channels: every REST call, and item channels that reconnect
and resume by themselves — one per item, or many items on one socket.

    async with Client("http://127.0.0.1:8000") as client:
        await client.login("alice", "secret-password")
        async with client.channel(item_id, since=0) as channel:
            seq = await channel.publish({"text": "hi"})
            async for message in channel:
                ...
        async with client.connect() as ws:  # /ws
            await ws.subscribe(item_id, since=0, state=True)
            async for frame in ws:  # each names its item
                ...
"""

from api.client.channel import Channel
from api.client.errors import (
    ChannelClosed,
    ChannelRefused,
    ClientError,
    HTTPError,
    NotRecovered,
    ProtocolError,
    PublishError,
    ServerUnavailable,
    StateError,
    SubscribeError,
)
from api.client.http import Client
from api.client.multiplex import Multiplex
from api.client.retry import Backoff
from api.client.types import Item, ItemState, Kind, Member, Message, Presence, Token, User

__all__ = [
    "Backoff",
    "Channel",
    "ChannelClosed",
    "ChannelRefused",
    "Client",
    "ClientError",
    "HTTPError",
    "Item",
    "ItemState",
    "Kind",
    "Member",
    "Message",
    "Multiplex",
    "NotRecovered",
    "Presence",
    "ProtocolError",
    "PublishError",
    "ServerUnavailable",
    "StateError",
    "SubscribeError",
    "Token",
    "User",
]
