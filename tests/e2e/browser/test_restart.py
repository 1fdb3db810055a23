"""The channels page across a server restart: reconnect, resume, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from playwright.async_api import expect

from tests.e2e.browser.pages import RECONNECT_TIMEOUT_MS, Tab
from tests.processes import Worker
from tests.servers import TEST_SECRET
from tests.support import PASSWORD, unique


async def rest_user(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Register and log in; the Authorization header of the session."""
    r = await http.post("/auth/register", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await http.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    http.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def post(http: httpx.AsyncClient, headers: dict[str, str], item_id: str, text: str) -> int:
    r = await http.post(
        f"/items/{item_id}/messages", json={"data": {"text": text}}, headers=headers
    )
    assert r.status_code == 201, r.text
    return int(r.json()["seq"])


async def test_a_restart_mid_conversation_loses_and_duplicates_nothing(
    browser: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": "",  # the SQLite file under VAR_DIR, kept across the restart
        "BROKER_URL": "memory://",
    }
    first = await asyncio.to_thread(Worker(env, tmp_path / "first.log").start)
    second: Worker | None = None
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = await Tab.open(browser, first.base)
    bob = await Tab.open(browser, first.base)
    try:
        async with httpx.AsyncClient(base_url=first.base, timeout=15) as http:
            as_alice = await rest_user(http, alice_name)
            as_bob = await rest_user(http, bob_name)
            r = await http.post("/items", json={"name": "restart"}, headers=as_alice)
            assert r.status_code == 201, r.text
            item_id = r.json()["id"]
            r = await http.put(
                f"/items/{item_id}/members/{bob_name}", json={"role": "writer"}, headers=as_alice
            )
            assert r.status_code == 200, r.text

            await alice.login(alice_name)
            await bob.login(bob_name)
            await alice.open_item(item_id)
            await bob.open_item(item_id)
            await alice.publish("a1")
            await bob.publish("b1")
            await alice.publish("a2")
            for tab in (alice, bob):
                await tab.wait_lines(3)

            # Stored right before the stop: they may or may not reach the pages before
            # their sockets close with 1012; either way they must show exactly once.
            for n in range(3):
                await post(http, as_bob, item_id, f"late {n}")
            await asyncio.to_thread(first.stop)
            for tab in (alice, bob):
                await expect(tab.page.locator("#channel-status")).to_have_attribute(
                    "data-state", "reconnecting"
                )

            second = await asyncio.to_thread(
                Worker(env, tmp_path / "second.log", port=first.port).start
            )
            # Stored while the pages are still backing off: delivered by the resume.
            for n in range(2):
                await post(http, as_alice, item_id, f"while away {n}")
            for tab in (alice, bob):
                await tab.wait_live(RECONNECT_TIMEOUT_MS)
                await tab.wait_lines(8)
            await bob.publish("b2")
            await alice.publish("a3")
            for tab in (alice, bob):
                await tab.wait_lines(10)

            r = await http.get(
                f"/items/{item_id}/messages", params={"limit": 1000}, headers=as_alice
            )
            assert r.status_code == 200, r.text
            stored = r.json()
        assert [m["seq"] for m in stored] == list(range(1, 11))
        expected = [m["data"]["text"] for m in stored]
        for tab in (alice, bob):
            assert await tab.seqs() == list(range(1, 11))
            assert await tab.texts() == expected
            assert tab.page_errors == []
        await alice.screenshot("channels-after-restart")
    finally:
        await alice.close()
        await bob.close()
        if second is not None:
            await asyncio.to_thread(second.stop)
        await asyncio.to_thread(first.stop)
