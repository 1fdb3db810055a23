"""The broker and presence for a `BROKER_URL`, chosen by its scheme in one place.

Implementations are imported lazily, so the embedded default needs no Redis client.
"""

from __future__ import annotations

from api.realtime.broker import Broker
from api.realtime.presence import MemoryPresence, Presence

SCHEMES = ("memory", "redis", "rediss")


def scheme_of(url: str) -> str:
    scheme = url.partition("://")[0]
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported BROKER_URL scheme {scheme!r}: use memory:// or redis://")
    return scheme


def broker_from_url(url: str) -> Broker:
    if scheme_of(url) == "memory":
        from api.realtime.memory import MemoryBroker

        return MemoryBroker()
    from api.realtime.redis import RedisBroker

    return RedisBroker(url)


def presence_from_url(url: str) -> Presence:
    if scheme_of(url) == "memory":
        return MemoryPresence()
    from api.realtime.redis_presence import RedisPresence

    return RedisPresence(url)
