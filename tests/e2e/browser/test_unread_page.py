"""Unread counts on the channels page: one `/ws` socket follows the items not open.

Counts rise live as others publish, clear when the item is opened, and survive a dropped
connection: the page subscribes again with `since` per item, so nothing is counted twice
and nothing is missed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from playwright.async_api import WebSocket, expect

from tests.e2e.browser.pages import RECONNECT_TIMEOUT_MS, Tab
from tests.python_client.conftest import Proxy
from tests.servers import LiveServer
from tests.support import Api, User, unique


def link(tab: Tab, item_id: str) -> Any:
    return tab.page.locator(f'.item-link[data-item-id="{item_id}"]')


def badge(tab: Tab, item_id: str) -> Any:
    return link(tab, item_id).locator(".unread")


async def following(tab: Tab, item_id: str, last_seq: int) -> None:
    """The page's subscription to `item_id` is live and has seen up to `last_seq`."""
    await expect(link(tab, item_id)).to_have_attribute("data-last-seq", str(last_seq))


async def shared_items(api: Api, owner: User, member: User, *names: str) -> list[str]:
    items = [await api.item(owner, name) for name in names]
    for item_id in items:
        await api.share(owner, item_id, member, "writer")
    return items


async def test_counts_rise_live_on_items_not_open_and_clear_when_opened(
    browser: Any, api: Api
) -> None:
    alice, bob = await api.user(unique("alice")), await api.user(unique("bob"))
    a, b, c = await shared_items(api, alice, bob, "first", "second", "third")
    reader = await Tab.open(browser, api.server.base_url)
    writer = await Tab.open(browser, api.server.base_url)
    try:
        await reader.login(bob.username)
        await reader.open_item(a)
        for item_id in (b, c):
            await following(reader, item_id, 0)

        for n in range(3):
            await api.post(alice, b, {"text": f"b{n}"})
        await api.post(alice, c, {"text": "c0"})
        await api.post(alice, a, {"text": "a0"})  # the open item: shown, not counted
        await expect(badge(reader, b)).to_have_text("3")
        await expect(badge(reader, c)).to_have_text("1")
        await reader.wait_lines(1)
        await expect(link(reader, a)).to_have_attribute("data-unread", "0")
        await expect(badge(reader, a)).to_be_hidden()

        # Another user's page publishes on an item the reader does not have open.
        await writer.login(alice.username)
        await writer.open_item(c)
        await writer.publish("from a page")
        await expect(badge(reader, c)).to_have_text("2")
        await expect(reader.page).to_have_title("(5) Item Channels")
        await reader.screenshot("unread-counts")

        # Opening an item clears its count and shows its messages.
        await link(reader, b).click()
        await reader.wait_live()
        await expect(badge(reader, b)).to_be_hidden()
        await expect(link(reader, b)).to_have_attribute("data-unread", "0")
        await reader.wait_lines(3)
        assert await reader.texts() == ["b0", "b1", "b2"]
        await expect(reader.page).to_have_title("(2) Item Channels")

        # The item left is followed from the last seq its channel showed: only what
        # arrives after it counts.
        await following(reader, a, 1)
        await api.post(alice, a, {"text": "a1"})
        await api.post(alice, a, {"text": "a2"})
        await following(reader, a, 3)
        await expect(badge(reader, a)).to_have_text("2")
        # The reader's own messages (from anywhere) are not unread.
        await api.post(bob, c, {"text": "mine"})
        await following(reader, c, 3)
        await expect(badge(reader, c)).to_have_text("2")
        # The open item's messages show in its channel, not as a count.
        await writer.publish("on c again")
        await api.post(alice, b, {"text": "b3"})
        await reader.wait_lines(4)
        await expect(link(reader, b)).to_have_attribute("data-unread", "0")
        await expect(badge(reader, c)).to_have_text("3")
        for tab in (reader, writer):
            assert tab.page_errors == []
    finally:
        await reader.close()
        await writer.close()


@pytest.fixture
async def proxy(server: LiveServer) -> AsyncIterator[Proxy]:
    relay = await Proxy(server.port).start()
    yield relay
    await relay.stop()


def record_subscribes(tab: Tab) -> list[list[dict[str, Any]]]:
    """The `subscribe` frames the page sends, one list per `/ws` socket it opens."""
    sockets: list[list[dict[str, Any]]] = []

    def on_socket(ws: WebSocket) -> None:
        if urlsplit(ws.url).path != "/ws":
            return
        frames: list[dict[str, Any]] = []
        sockets.append(frames)

        def on_sent(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "subscribe":
                frames.append(frame)

        ws.on("framesent", on_sent)

    tab.page.on("websocket", on_socket)
    return sockets


def subscribed(frames: list[dict[str, Any]]) -> dict[str, int | None]:
    return {f["item_id"]: f.get("since") for f in frames}


async def test_a_dropped_connection_resubscribes_with_since_and_counts_each_message_once(
    browser: Any, api: Api, proxy: Proxy
) -> None:
    alice, bob = await api.user(unique("alice")), await api.user(unique("bob"))
    a, b, c = await shared_items(api, alice, bob, "open", "busy", "quiet")
    tab = await Tab.open(browser, proxy.url)  # every connection of the page goes through it
    sockets = record_subscribes(tab)
    try:
        await tab.login(bob.username)
        await tab.open_item(a)
        for item_id in (b, c):
            await following(tab, item_id, 0)
        for n in range(5):
            await api.post(alice, b, {"text": f"before {n}"})
        await expect(badge(tab, b)).to_have_text("5")
        await following(tab, b, 5)

        # The network goes away, and stays away for a while.
        dropped, reopened = sockets[-1], len(sockets)
        await proxy.pause()
        proxy.cut()
        await expect(tab.page.locator("#channel-status")).to_have_attribute(
            "data-state", "reconnecting"
        )
        for n in range(4):
            await api.post(alice, b, {"text": f"while away {n}"})
        for n in range(2):
            await api.post(alice, c, {"text": f"quiet {n}"})
        await proxy.resume()

        # Every message after the last one seen is delivered by the resubscription, once:
        # seq 9 is the last of b, so any duplicate of 6–9 would already be counted.
        await following(tab, b, 9)
        await expect(badge(tab, b)).to_have_text("9", timeout=RECONNECT_TIMEOUT_MS)
        await following(tab, c, 2)
        await expect(badge(tab, c)).to_have_text("2")
        await api.post(alice, b, {"text": "after"})
        await following(tab, b, 10)
        await expect(badge(tab, b)).to_have_text("10")

        # The socket dropped had subscribed from the live end (`a` too, when it was ready
        # before `a` was opened from the list); the one that replaced it follows the items
        # not open, with `since`: the last seq the page had of each.
        before = subscribed(dropped)
        assert before.keys() - {a} == {b, c}
        assert set(before.values()) == {None}
        assert len(sockets) > reopened
        assert subscribed(sockets[-1]) == {b: 5, c: 0}

        # Opening the item shows each of its messages once, in order.
        await tab.wait_live(RECONNECT_TIMEOUT_MS)
        await link(tab, b).click()
        await tab.wait_live()
        await tab.wait_lines(10)
        assert await tab.seqs() == list(range(1, 11))
        assert tab.page_errors == []
    finally:
        await tab.close()


MODULE_SCRIPT = """async ([username, password, first, second, forged]) => {
  const { Client } = await import("/static/item-channels.js");
  const client = new Client();
  await client.login(username, password);
  const mux = client.multiplex();
  const seen = { [first]: [], [second]: [] };
  const states = [];
  const until = (target, name) =>
    new Promise((resolve) => {
      target.addEventListener(name, (e) => resolve(e.detail), { once: true });
    });
  const holds = async (test) => {
    while (!test()) await new Promise((resolve) => setTimeout(resolve, 20));
  };
  const one = mux.subscribe(first, { state: true });
  const two = mux.subscribe(second, { since: 0 });
  const forbidden = until(mux.subscribe(forged), "refused");
  for (const sub of [one, two]) {
    sub.addEventListener("message", (e) => {
      seen[sub.itemId].push([e.detail.item_id, e.detail.seq, e.detail.data]);
    });
  }
  one.addEventListener("itemstate", (e) => states.push([e.detail.version, e.detail.snapshot]));
  await Promise.all([until(one, "subscribed"), until(two, "subscribed")]);
  const seqs = [
    await mux.publish(first, "one"),
    await two.publish("two"),
    await mux.publish(second, "three"),
  ];
  const version = await one.patch([{ op: "add", path: "/k", value: 1 }]);
  let illegal = null;
  try {
    await mux.patch(first, [{ op: "test", path: "/k", value: 2 }]);
  } catch (err) {
    illegal = err.status;
  }
  await holds(() => seen[second].length === 2);
  await mux.unsubscribe(second);
  await mux.publish(second, "unheard");
  await mux.publish(first, "last");
  await holds(() => seen[first].length === 2);
  const refusal = await forbidden;
  const result = {
    seen, seqs, version, illegal, states,
    refusal: refusal.code,
    user: mux.user.username,
    subscribed: [...mux.subscriptions.keys()],
  };
  mux.close();
  return result;
}"""


async def test_the_module_follows_items_publishes_and_patches_on_one_socket(
    browser: Any, api: Api
) -> None:
    alice = await api.user()
    first, second = await api.item(alice, "one"), await api.item(alice, "two")
    forged = unique("forged")
    tab = await Tab.open(browser, api.server.base_url)
    try:
        await tab.goto("/monitor")
        result = await tab.page.evaluate(
            MODULE_SCRIPT, [alice.username, alice.password, first, second, forged]
        )
        assert result["seqs"] == [1, 1, 2]
        assert result["seen"] == {
            first: [[first, 1, "one"], [first, 2, "last"]],
            second: [[second, 1, "two"], [second, 2, "three"]],
        }
        assert result["version"] == 1
        assert result["illegal"] == "conflict"
        assert result["states"] == [[0, True], [1, False]]
        assert result["refusal"] == "forbidden"
        assert result["user"] == alice.username
        assert result["subscribed"] == [first]
        ws_sockets = [u for u in tab.sockets if urlsplit(u).path == "/ws"]
        assert len(ws_sockets) == 1
    finally:
        await tab.close()
