"""An asyncio client of Item Channels: every REST call, and item channels that reconnect
and resume by themselves.

    async with Client("http://127.0.0.1:8000") as client:
        await client.login("alice", "secret-password")
        async with client.channel(item_id, since=0) as channel:
            seq = await channel.publish({"text": "hi"})
            async for message in channel:
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
)
from api.client.http import Client
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
    "NotRecovered",
    "Presence",
    "ProtocolError",
    "PublishError",
    "ServerUnavailable",
    "Token",
    "User",
]
