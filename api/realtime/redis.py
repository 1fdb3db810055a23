"""Redis broker: one pub/sub connection per process, multiplexing every channel.

If Redis goes away, the reader reconnects on its own with backoff and subscribes again
to every channel still wanted; `on_reconnect` then lets the hub re-read from the store
whatever was published while the connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api import metrics
from api.realtime.memory import QueueSubscription

log = logging.getLogger(__name__)

PREFIX = "ic:"
MAX_BACKOFF = 5.0
# A stored group's payloads in one command: ARGV holds channel, payload, channel, …
# redis-py packs a pipeline's commands and parses their replies one by one: in groups of
# 32 that was 16.6 µs of CPU per message, and 5.7 µs this way (groups of 8: 29 → 20).
# The channels are arguments, not KEYS: they name no keys.
PUBLISH_ALL = "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end"


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A client whose commands survive a Redis restart: a pooled connection found
    dead is replaced and the command tried again (twice, 50 ms then 100 ms later)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )


class RedisBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client: aioredis.Redis | None = None
        self.reconnects = 0
        self.connected = asyncio.Event()
        self.on_reconnect: Callable[[], Awaitable[None]] | None = None
        self._subs: defaultdict[str, set[QueueSubscription]] = defaultdict(set)
        self._pubsub: Any = None
        self._remote: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self._publish_all: AsyncScript | None = None

    def _new_client(self) -> aioredis.Redis:
        return redis_client(self.url, health_check_interval=5)

    async def start(self) -> None:
        self.client = self._new_client()
        # Run by its SHA; loaded again by itself when Redis no longer has it (a restart).
        self._publish_all = self.client.register_script(PUBLISH_ALL)
        self._reader = asyncio.create_task(self._read_forever(), name="redis-broker-reader")
        # Start even if Redis is down: the service keeps storing, and catches up later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 5)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._drop_pubsub()
        if self.client is not None:
            await self.client.aclose()

    async def ping(self) -> None:
        assert self.client is not None
        await self.client.ping()

    async def publish(self, channel: str, payload: bytes) -> None:
        assert self.client is not None
        await self.client.publish(PREFIX + channel, payload)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One command, one round trip: each payload published on its channel, in order."""
        assert self._publish_all is not None
        if not messages:
            return
        args: list[str | bytes] = []
        for channel, payload in messages:
            args.append(PREFIX + channel)
            args.append(payload)
        await self._publish_all(args=args)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[QueueSubscription]:
        sub = QueueSubscription()
        subs = self._subs[channel]
        subs.add(sub)
        if len(subs) == 1:
            await self._ensure_subscribed()
        try:
            yield sub
        finally:
            subs.discard(sub)
            if not subs:
                del self._subs[channel]
                if self._pubsub is not None and channel in self._remote:
                    self._remote.discard(channel)
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(PREFIX + channel)

    async def _ensure_subscribed(self) -> None:
        """Subscribe the live connection to every wanted channel it lacks."""
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reader subscribes to everything wanted when it reconnects
        missing = [c for c in self._subs if c not in self._remote]
        if not missing:
            return
        self._remote.update(missing)
        try:
            await pubsub.subscribe(*(PREFIX + c for c in missing))
        except (RedisError, OSError):
            log.warning("redis subscribe failed; will retry on reconnect")

    async def _connect(self) -> None:
        assert self.client is not None
        pubsub = self.client.pubsub()
        # Always subscribed to something, so reading never fails on an idle connection.
        await pubsub.subscribe(PREFIX + "keepalive")
        self._pubsub = pubsub
        self._remote = set()
        await self._ensure_subscribed()

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self.connected.clear()
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read_forever(self) -> None:
        backoff = 0.1
        first = True
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    self.connected.set()
                    if not first:
                        self.reconnects += 1
                        metrics.BROKER_RECONNECTS.inc()
                        log.warning("redis broker reconnected")
                        if self.on_reconnect is not None:
                            await self.on_reconnect()
                    first = False
                    backoff = 0.1
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
                if message is not None and message["type"] == "message":
                    self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("redis broker connection lost (%s); retrying", type(exc).__name__)
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:
                log.exception("redis broker reader failed; retrying")
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _dispatch(self, raw_channel: bytes, data: bytes) -> None:
        channel = raw_channel.decode()[len(PREFIX) :]
        for sub in self._subs.get(channel, ()):
            sub.queue.put_nowait(data)
