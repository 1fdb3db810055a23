"""The channels page (`GET /`) in a real browser: chat, presence, refusals, escaping."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from playwright.async_api import expect

from tests.e2e.browser.pages import Tab, token_of
from tests.servers import LiveServer
from tests.support import PASSWORD, Api, started, unique
from tests.tokens import claims_of

MakeServer = Callable[..., AbstractContextManager[LiveServer]]


async def test_page_and_client_module_are_served_with_a_strict_policy(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        page = await http.get("/")
        module = await http.get("/static/item-channels.js")
        missing = await http.get("/static/nope.js")
        sneaky = await http.get("/static/..%2Fmain.py")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self' ws: wss:" in policy
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert "export class Client" in module.text
    assert missing.status_code == 404
    assert sneaky.status_code == 404


async def test_two_users_chat_and_see_each_other_online(browser: Any, server: LiveServer) -> None:
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = await Tab.open(browser, server.base_url)
    bob = await Tab.open(browser, server.base_url)
    try:
        await alice.register(alice_name)
        await bob.register(bob_name)

        item_id = await alice.create_item("Weekend plans")
        await alice.wait_live()
        await alice.page.fill("#share-username", bob_name)
        await alice.page.select_option("#share-role", "writer")
        await alice.page.click("#share-button")
        await expect(alice.page.locator("#members")).to_contain_text(bob_name)

        await bob.open_item(item_id)
        await expect(bob.page.locator("#role")).to_have_text("writer")
        for tab in (alice, bob):
            await expect(tab.page.locator("#online li")).to_have_text(
                sorted([alice_name, bob_name])
            )
            await expect(tab.page.locator("#online-count")).to_have_text("2")

        await alice.publish("hello bob")
        await bob.wait_lines(1)
        await bob.publish("hi alice")
        await alice.publish("see you saturday")
        for tab in (alice, bob):
            await tab.wait_lines(3)
            assert await tab.texts() == ["hello bob", "hi alice", "see you saturday"]
            assert await tab.seqs() == [1, 2, 3]
            senders = await tab.page.locator("#messages .sender").all_text_contents()
            assert senders == [alice_name, bob_name, alice_name]

        # Each connection attempt used a fresh ticket limited to the item.
        channel_sockets = [u for u in alice.sockets + bob.sockets if f"/items/{item_id}/ws" in u]
        assert channel_sockets
        for url in channel_sockets:
            ticket = claims_of(token_of(url))
            assert ticket["typ"] == "ticket"
            assert ticket["item_id"] == item_id

        await alice.screenshot("channels-chat-alice")
        await bob.screenshot("channels-chat-bob")

        # Bob leaves: Alice sees him go.
        await bob.close()
        await expect(alice.page.locator("#online li")).to_have_text([alice_name])
        for tab in (alice, bob):
            assert tab.page_errors == []
    finally:
        await alice.close()
        await bob.close()


async def test_a_forged_item_id_is_refused_with_its_reason(browser: Any, api: Api) -> None:
    alice = await api.user()
    tab = await Tab.open(browser, api.server.base_url)
    try:
        await tab.login(alice.username)
        await tab.goto(f"/#item={unique('forged')}")
        await expect(tab.page.locator("#refused")).to_be_visible()
        await expect(tab.page.locator("#refused-reason")).to_have_text("forbidden")
        await expect(tab.page.locator("#channel-status")).to_have_attribute("data-state", "refused")
        await expect(tab.page.locator("#message-input")).to_be_disabled()
        await tab.screenshot("channels-refused-forged")
    finally:
        await tab.close()


async def test_a_member_removed_from_the_item_sees_the_refusal(browser: Any, api: Api) -> None:
    alice, bob = await api.user(unique("alice")), await api.user(unique("bob"))
    item_id = await api.item(alice, "shared")
    await api.share(alice, item_id, bob, "reader")
    owner = await Tab.open(browser, api.server.base_url)
    member = await Tab.open(browser, api.server.base_url)
    try:
        await owner.login(alice.username)
        await member.login(bob.username)
        await member.open_item(item_id)
        await expect(member.page.locator("#role")).to_have_text("reader")
        await expect(member.page.locator("#message-input")).to_be_disabled()
        await api.post(alice, item_id, {"text": "before"})
        await member.wait_lines(1)

        await owner.open_item(item_id)
        await owner.page.click(f'button[aria-label="Remove {bob.username}"]')
        await expect(owner.page.locator("#members")).not_to_contain_text(bob.username)

        await expect(member.page.locator("#refused")).to_be_visible()
        await expect(member.page.locator("#refused-reason")).to_have_text("forbidden")
        # The item is gone from the member's list, and the channel does not retry.
        await expect(member.page.locator(f'.item-link[data-item-id="{item_id}"]')).to_have_count(0)
        sockets = len(member.sockets)
        await api.post(alice, item_id, {"text": "after"})
        await expect(owner.lines()).to_have_count(2)
        assert len(member.sockets) == sockets
        assert await member.texts() == ["before"]
        await member.screenshot("channels-refused-removed")
    finally:
        await owner.close()
        await member.close()


XSS = "<img src=x onerror=alert(1)>"


async def test_markup_in_messages_and_names_shows_as_text(browser: Any, api: Api) -> None:
    alice = await api.user()
    tab = await Tab.open(browser, api.server.base_url)
    try:
        await tab.login(alice.username)
        item_id = await tab.create_item("<b>bold</b> <script>alert(2)</script>")
        await tab.wait_live()
        await tab.publish(XSS)
        await api.post(alice, item_id, XSS)  # a bare string as data
        await api.post(alice, item_id, {"html": XSS})  # any JSON: shown as JSON text
        await tab.wait_lines(3)
        texts = await tab.texts()
        assert texts[:2] == [XSS, XSS]
        assert XSS in texts[2]
        assert await tab.page.locator("#messages img").count() == 0
        assert await tab.page.locator("#item-title").text_content() == (
            "<b>bold</b> <script>alert(2)</script>"
        )
        assert await tab.page.locator("#item-title b, .items b, .items script").count() == 0
        await tab.screenshot("channels-xss-as-text")
        assert tab.dialogs == []
        assert tab.page_errors == []
    finally:
        await tab.close()


SUBPROTOCOL_SCRIPT = """async ([username, password, itemId]) => {
  const { Client } = await import("/static/item-channels.js");
  const client = new Client();
  await client.login(username, password);
  const channel = client.channel(itemId, { auth: "subprotocol" });
  const states = [];
  channel.addEventListener("state", (e) => states.push(e.detail.state));
  await new Promise((resolve, reject) => {
    channel.addEventListener("ready", resolve, { once: true });
    channel.addEventListener("refused", (e) => reject(new Error(e.detail.reason)));
  });
  // Past the first access token's expiry: the client refreshed it and told the socket.
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const seq = await channel.publish({ text: "still here" });
  const result = { seq, states: [...states], protocol: channel.ws.protocol };
  channel.close();
  return result;
}"""


async def test_the_module_keeps_a_token_socket_open_past_expiry(
    browser: Any, make_server: MakeServer
) -> None:
    async with started(make_server, access_token_ttl=3) as api:
        alice = await api.user()
        item_id = await api.item(alice)
        tab = await Tab.open(browser, api.server.base_url)
        try:
            await tab.goto("/monitor")
            result = await tab.page.evaluate(
                SUBPROTOCOL_SCRIPT, [alice.username, PASSWORD, item_id]
            )
            assert result == {"seq": 1, "states": ["open"], "protocol": "bearer"}
            channel_sockets = [u for u in tab.sockets if "/items/" in u]
            assert len(channel_sockets) == 1
            assert "token=" not in channel_sockets[0]
        finally:
            await tab.close()
