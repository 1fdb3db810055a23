"""Unit tests of the in-memory attempt counts (one process, no Redis)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from api.auth.attempts import AuthLimits, HashGate, storage_for


def limits() -> AuthLimits:
    storage, _ = storage_for("memory://", "test")
    return AuthLimits(
        storage,
        logins_per_username=5,
        logins_per_address=20,
        login_window=60,
        registrations_per_address=5,
        registration_window=60,
        hash_gate=HashGate(1, 1),
    )


async def test_a_login_cleared_while_expired_counts_are_swept_raises_nothing() -> None:
    # The sweep of expired counts runs as a task that yields between keys; a count
    # cleared by a successful login in that pause must not make it fail.
    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: failures.append(context))
    auth = limits()
    await auth.login_attempt("alice", "192.0.2.1")
    await auth.login_attempt("bob", "192.0.2.1")
    await asyncio.sleep(0)  # the sweep starts and pauses on the first key
    await auth.login_succeeded("bob")
    await asyncio.sleep(0.2)
    del auth
    gc.collect()  # a failed sweep task reports its exception when it is collected
    await asyncio.sleep(0)
    assert failures == []


async def test_a_cleared_count_starts_again_from_nothing() -> None:
    auth = limits()
    for _ in range(5):
        await auth.login_attempt("carol", "192.0.2.2")
    await auth.login_succeeded("carol")
    for _ in range(5):
        await auth.login_attempt("carol", "192.0.2.2")
