"""Presence shared by every worker through Redis.

Keys (all under `ic:`):
- `p:{item}`      hash user -> open sockets on the item, summed over all workers
- `w:{worker}`    hash "{item}\\0{user}" -> this worker's share of those sockets
- `alive:{worker}` a key with a TTL, refreshed by the worker's heartbeat
- `workers`       set of workers that have presence entries

Each change runs as one Lua script, so the two hashes never disagree. A worker that
dies stops refreshing `alive:`; within `DEAD_AFTER` seconds another worker's reaper
subtracts the dead worker's share and announces the users who left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.realtime.presence import Announce
from api.realtime.redis import redis_client

log = logging.getLogger(__name__)

HEARTBEAT = 2.0
DEAD_AFTER = 6  # seconds without a heartbeat
P = "ic:p:"
W = "ic:w:"
ALIVE = "ic:alive:"
WORKERS = "ic:workers"

# KEYS: p:{item}, w:{worker}, workers   ARGV: user, field, worker
JOIN = """
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) == 1 then
  return redis.call('HLEN', KEYS[1])
end
return -1
"""

# KEYS: p:{item}, w:{worker}   ARGV: user, field
LEAVE = """
local mine = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if mine <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if mine < 0 then return -1 end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return redis.call('HLEN', KEYS[1])
end
return -1
"""

# Subtract a worker's whole share. KEYS: w:{worker}, workers  ARGV: worker, prefix
# Returns a flat list item, user, count-after for every user who went offline.
REAP = """
local fields = redis.call('HGETALL', KEYS[1])
local left = {}
for i = 1, #fields, 2 do
  local sep = string.find(fields[i], '\\0', 1, true)
  local item = string.sub(fields[i], 1, sep - 1)
  local user = string.sub(fields[i], sep + 1)
  local key = ARGV[2] .. item
  if redis.call('HINCRBY', key, user, -tonumber(fields[i + 1])) <= 0 then
    redis.call('HDEL', key, user)
    table.insert(left, item)
    table.insert(left, user)
    table.insert(left, redis.call('HLEN', key))
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return left
"""


class RedisPresence:
    def __init__(self, url: str) -> None:
        self.url = url
        self.worker = secrets.token_hex(8)
        self.client: aioredis.Redis | None = None
        # Announces a presence change on an item: (item_id, event, username, count).
        self.announce: Announce | None = None
        self._local: dict[int, tuple[str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self.client = redis_client(self.url)
        self._join = self.client.register_script(JOIN)
        self._leave = self.client.register_script(LEAVE)
        self._reap = self.client.register_script(REAP)
        self._task = asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # A cancellation that lands inside a Redis command may be swallowed by the
            # client's retries: the loop then ends on the flag, one beat later at most.
            await asyncio.wait([self._task], timeout=HEARTBEAT + 1)
        if self.client is not None:
            # A clean stop leaves at once instead of waiting to be reaped.
            with contextlib.suppress(RedisError, OSError):
                await self._reap_worker(self.worker, announce=True)
                await self.client.delete(ALIVE + self.worker)
            await self.client.aclose()

    def _field(self, item_id: str, username: str) -> str:
        return f"{item_id}\0{username}"

    async def join(self, item_id: str, username: str, socket_key: int) -> int | None:
        assert self.client is not None
        self._local[socket_key] = (item_id, username)
        count = await self._join(
            keys=[P + item_id, W + self.worker, WORKERS],
            args=[username, self._field(item_id, username), self.worker],
        )
        return int(count) if int(count) >= 0 else None

    async def leave(self, item_id: str, username: str, socket_key: int) -> int | None:
        assert self.client is not None
        if self._local.pop(socket_key, None) is None:
            return None
        count = await self._leave(
            keys=[P + item_id, W + self.worker], args=[username, self._field(item_id, username)]
        )
        return int(count) if int(count) >= 0 else None

    async def users(self, item_id: str) -> list[str]:
        assert self.client is not None
        names = await self.client.hkeys(P + item_id)
        return sorted(_text(n) for n in names)

    async def resync(self) -> None:
        """Rewrite this worker's share from its own sockets (after Redis came back)."""
        assert self.client is not None
        await self._reap(keys=[W + self.worker, WORKERS], args=[self.worker, P])
        for (item_id, username), sockets in Counter(self._local.values()).items():
            for _ in range(sockets):
                await self._join(
                    keys=[P + item_id, W + self.worker, WORKERS],
                    args=[username, self._field(item_id, username), self.worker],
                )

    async def _reap_worker(self, worker: str, *, announce: bool) -> None:
        assert self.client is not None
        left = await self._reap(keys=[W + worker, WORKERS], args=[worker, P])
        if not announce or self.announce is None:
            return
        for i in range(0, len(left), 3):
            await self.announce(left[i].decode(), "leave", left[i + 1].decode(), int(left[i + 2]))

    async def _heartbeat_forever(self) -> None:
        assert self.client is not None
        while not self._closing:
            try:
                await self.client.set(ALIVE + self.worker, b"1", ex=DEAD_AFTER)
                for raw in await self.client.smembers(WORKERS):
                    worker = _text(raw)
                    if worker != self.worker and not await self.client.exists(ALIVE + worker):
                        log.warning("reaping presence of a dead worker")
                        await self._reap_worker(worker, announce=True)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("presence heartbeat failed (%s)", type(exc).__name__)
            await asyncio.sleep(HEARTBEAT)


def _text(value: bytes | str) -> str:
    # The client answers bytes unless created with `decode_responses`.
    return value.decode() if isinstance(value, bytes) else value
