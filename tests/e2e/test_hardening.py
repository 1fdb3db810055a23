"""Hardening: what an attacker tried beyond the catalogue in test_adversarial.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx

from api.cache import TTLCache
from tests.client import PASSWORD, Api
from tests.servers import LiveServer

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


# A revoked session is never cached again.


def test_a_value_read_before_an_invalidation_is_not_stored_after_it() -> None:
    cache: TTLCache[str, str] = TTLCache(60)
    before = cache.generation()
    cache.pop("sid")  # the revocation lands while "sid" is being read
    cache.put("sid", "active", since=before)
    assert cache.get("sid") is None
    cache.put("sid", "active", since=cache.generation())  # read after it: fine
    assert cache.get("sid") == "active"
    before = cache.generation()
    cache.clear()  # the broker was away: every read in flight is suspect
    cache.put("other", "active", since=before)
    assert cache.get("other") is None


def test_forgotten_tombstones_refuse_more_never_less() -> None:
    cache: TTLCache[str, str] = TTLCache(60, max_tombstones=2)
    before = cache.generation()
    for key in ("a", "b", "c", "d"):
        cache.pop(key)
    cache.put("a", "active", since=before)
    assert cache.get("a") is None


async def test_no_token_works_after_logout_with_requests_in_flight(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        api = Api(server, http)
        user = await api.user()
        for _ in range(25):
            r = await http.post(
                "/auth/login", json={"username": user.username, "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            http.cookies.clear()
            # The first reads miss the cache and query the session while logout revokes it.
            readers = [
                asyncio.create_task(http.get("/auth/me", headers=headers)) for _ in range(12)
            ]
            await asyncio.sleep(0)
            out = await http.post("/auth/logout", headers=headers)
            assert out.status_code == 204
            await asyncio.gather(*readers)
            for path in ("/auth/me", "/auth/refresh"):
                method = http.get if path == "/auth/me" else http.post
                assert (await method(path, headers=headers)).status_code == 401, path
