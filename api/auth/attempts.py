"""Limits on authentication work: login attempts, registrations and password hashing.

An attempt is counted before its password is checked, so concurrent attempts cannot
all slip in before the first failure is recorded. The counts live in the `limits`
library's storage: Redis when the broker is Redis (every worker shares them), memory
with one process. Password hashing is bounded separately: a few hashes at once, a
short queue behind them, and a refusal beyond it, so a flood of logins cannot make a
legitimate one wait for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

T = TypeVar("T")


class Refused(Exception):
    """Not now: the limit was reached (429) or the service is busy (503)."""

    def __init__(self, status: int, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class HashGate:
    """At most `concurrency` password hashes at once and `queue` waiting for one."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queue = queue
        self._waiting = 0

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._slots.locked() and self._waiting >= self._queue:
            raise Refused(503, "the server is busy; try again shortly", 1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        except BaseException:
            self._slots.release()
            raise
        # Released when the hash is done, not when the caller stops waiting for it:
        # a client that disconnects does not free a slot its hash still occupies.
        work.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(work)


class _MemoryStorage(MemoryStorage):
    """`limits`' memory storage with a `clear` its expiry sweep survives.

    The sweep lists the keys, then yields between them; the library's `clear` deletes
    a key outright, so a login that succeeds during that pause made the sweep die with
    a KeyError, logged as an error. Emptying the key's events instead leaves it for the
    sweep to drop, under its lock.
    """

    async def clear(self, key: str) -> None:
        self.storage.pop(key, None)
        self.expirations.pop(key, None)
        if key in self.events:
            self.events[key] = []


async def _nothing() -> None:
    return None


def storage_for(broker_url: str, key_prefix: str) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """The broker's Redis when it is Redis (shared by every worker), else memory; and
    what closes it."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return _MemoryStorage(), _nothing
    # Our own pool, so that shutdown can close its connections (the storage cannot).
    pool = redis.asyncio.ConnectionPool.from_url(broker_url)
    storage = RedisStorage(
        f"async+{broker_url}",
        implementation="redispy",
        key_prefix=key_prefix,
        wrap_exceptions=True,
        connection_pool=pool,  # type: ignore[arg-type]
    )
    return storage, pool.aclose


class AuthLimits:
    """Login attempts per username and per address, registrations per address."""

    def __init__(
        self,
        storage: Storage,
        *,
        logins_per_username: int,
        logins_per_address: int,
        login_window: int,
        registrations_per_address: int,
        registration_window: int,
        hash_gate: HashGate,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._by_username = RateLimitItemPerSecond(logins_per_username, login_window)
        self._by_address = RateLimitItemPerSecond(logins_per_address, login_window)
        self._registrations = RateLimitItemPerSecond(registrations_per_address, registration_window)
        self.hash_gate = hash_gate

    async def login_attempt(self, username: str, address: str) -> None:
        """Count an attempt, or raise `Refused` (429). Unknown names count alike, so a
        429 says nothing about which accounts exist."""
        await self._hit(self._by_address, "login-address", address)
        await self._hit(self._by_username, "login-user", _name_key(username))

    async def login_succeeded(self, username: str) -> None:
        with contextlib.suppress(StorageError):  # the count expires with its window anyway
            await self._limiter.clear(self._by_username, "login-user", _name_key(username))

    async def registration(self, address: str) -> None:
        await self._hit(self._registrations, "register-address", address)

    async def _hit(self, item: RateLimitItem, kind: str, key: str) -> None:
        try:
            if await self._limiter.hit(item, kind, key):
                return
            stats = await self._limiter.get_window_stats(item, kind, key)
        except StorageError as exc:
            raise Refused(503, "the server is busy; try again shortly", 1) from exc
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise Refused(429, "too many attempts; try again later", wait)


def _name_key(username: str) -> str:
    # Usernames are unique without regard to case: so are their counts.
    return username[:128].casefold()


def default_concurrency() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
