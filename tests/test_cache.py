"""The cache behind sessions and item access: concurrent misses share one read."""

from __future__ import annotations

import asyncio

import pytest

from api.cache import TTLCache


class Reads:
    """A read that waits to be released, counting how often it ran."""

    def __init__(self, value: str | None = "active") -> None:
        self.count = 0
        self.value = value
        self.release = asyncio.Event()

    async def __call__(self) -> str | None:
        self.count += 1
        await self.release.wait()
        return self.value


async def test_callers_missing_at_once_share_one_read() -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    read = Reads()
    waiting = [asyncio.create_task(cache.load("sid", read)) for _ in range(50)]
    await asyncio.sleep(0)
    read.release.set()
    assert await asyncio.gather(*waiting) == ["active"] * 50
    assert read.count == 1
    assert cache.get("sid") == "active"
    assert await cache.load("sid", read) == "active"  # a load after it reads again
    assert read.count == 2


async def test_a_failed_read_fails_every_caller_and_is_not_kept() -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    count = 0

    async def failing() -> str:
        nonlocal count
        count += 1
        await asyncio.sleep(0)
        raise LookupError("not found")

    waiting = [asyncio.create_task(cache.load("sid", failing)) for _ in range(5)]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert count == 1
    with pytest.raises(LookupError):
        await cache.load("sid", failing)
    assert count == 2


async def test_nothing_is_kept_when_the_read_finds_nothing() -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    read = Reads(value=None)
    read.release.set()
    assert await cache.load("sid", read) is None
    assert cache.get("sid") is None


@pytest.mark.parametrize("invalidate", ["pop", "clear", "drop_where"])
async def test_a_caller_after_an_invalidation_does_not_share_the_read_before_it(
    invalidate: str,
) -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    before = Reads("active")
    first = asyncio.create_task(cache.load("sid", before))
    await asyncio.sleep(0)
    if invalidate == "pop":
        cache.pop("sid")  # revoked while the first read is in flight
    elif invalidate == "clear":
        cache.clear()
    else:
        cache.drop_where(lambda key: key == "sid")
    after = Reads(None)
    second = asyncio.create_task(cache.load("sid", after))
    await asyncio.sleep(0)
    before.release.set()
    after.release.set()
    assert await first == "active"  # it began before the revocation, as without a cache
    assert await second is None  # read afresh: the revocation is seen
    assert (before.count, after.count) == (1, 1)
    assert cache.get("sid") is None  # the read begun before it is not stored


async def test_a_cancelled_caller_does_not_cancel_the_shared_read() -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    read = Reads()
    leader = asyncio.create_task(cache.load("sid", read))
    follower = asyncio.create_task(cache.load("sid", read))
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0)
    read.release.set()
    assert await follower == "active"
    assert leader.cancelled()
    assert cache.get("sid") == "active"
