"""A small time-bounded cache for hot read paths (sessions and item access)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Entries live `ttl` seconds at most and are dropped at once when invalidated.

    Bounded: beyond `max_entries` the oldest entries go first. A `ttl` of 0 disables it.

    A value read from the database before an invalidation must not be stored after it
    (it would bring a revoked session back to life). Callers take `generation()` before
    reading and pass it to `put(..., since=)`: a put is refused when its key (or the
    whole cache) was invalidated after that generation.

    `load` does both, and shares one read among the callers that miss the same key at
    once: when an entry expires under many requests or handshakes in flight, the
    database is read once, not once per caller.
    """

    def __init__(
        self, ttl: float, max_entries: int = 100_000, max_tombstones: int = 10_000
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_tombstones = max_tombstones
        self._entries: dict[K, tuple[float, V]] = {}
        self._generation = 0
        # Key -> generation of its last invalidation; a forgotten tombstone raises the
        # barrier instead, so forgetting can only refuse more puts, never fewer.
        self._tombstones: OrderedDict[K, int] = OrderedDict()
        self._barrier = 0
        # Reads in flight by key; an invalidation forgets them, so that a caller coming
        # after it reads afresh instead of sharing a read begun before it.
        self._loading: dict[K, asyncio.Future[V | None]] = {}

    def generation(self) -> int:
        return self._generation

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, since: int | None = None) -> None:
        if self.ttl <= 0:
            return
        if since is not None and (since < self._barrier or since < self._tombstones.get(key, 0)):
            return  # invalidated while it was being read
        if len(self._entries) >= self.max_entries:
            # dicts keep insertion order: drop the oldest tenth.
            for old in list(self._entries)[: self.max_entries // 10 or 1]:
                del self._entries[old]
        self._entries[key] = (time.monotonic() + self.ttl, value)

    async def load(self, key: K, read: Callable[[], Awaitable[V | None]]) -> V | None:
        """`read()`, stored (unless None, or invalidated while it was read); callers
        loading the same key meanwhile share this read and its outcome, exception
        included. A caller cancelled while waiting does not cancel the read."""
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(key, read, self._generation))
            self._loading[key] = pending
            pending.add_done_callback(partial(self._loaded, key))
        return await asyncio.shield(pending)

    async def _read(self, key: K, read: Callable[[], Awaitable[V | None]], since: int) -> V | None:
        value = await read()
        if value is not None:
            self.put(key, value, since=since)
        return value

    def _loaded(self, key: K, done: asyncio.Future[V | None]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved, even when every caller stopped waiting

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)
        self._loading.pop(key, None)
        self._generation += 1
        self._tombstones.pop(key, None)
        self._tombstones[key] = self._generation
        while len(self._tombstones) > self.max_tombstones:
            _, forgotten = self._tombstones.popitem(last=False)
            self._barrier = max(self._barrier, forgotten)

    def drop_where(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]
        self._loading.clear()
        self._raise_barrier()

    def clear(self) -> None:
        self._entries.clear()
        self._loading.clear()
        self._raise_barrier()

    def _raise_barrier(self) -> None:
        # Keys being read now are not known: refuse every read begun before this.
        self._generation += 1
        self._barrier = self._generation
        self._tombstones.clear()
