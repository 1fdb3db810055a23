"""The monitor page (`GET /monitor`): a ticket-authenticated socket drawn as a live chart."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from playwright.async_api import expect

from tests.e2e.browser.pages import Tab, token_of
from tests.support import Api
from tests.tokens import claims_of

AT_LEAST_THREE = re.compile(r"^([3-9]|[1-9][0-9]+)$")
AT_LEAST_TEN = re.compile(r"^[1-9][0-9]+$")


async def test_the_monitor_chart_receives_points(browser: Any, api: Api) -> None:
    alice = await api.user()
    item_id = await api.item(alice)
    tab = await Tab.open(browser, api.server.base_url)
    try:
        await tab.login(alice.username, path="/monitor?interval=0.2")
        await expect(tab.page.locator("#monitor-status")).to_have_attribute("data-state", "open")
        for n in range(20):
            await api.post(alice, item_id, n)
        for chart in ("#charts", "#chart-percent", "#chart-activity"):
            await expect(tab.page.locator(chart)).to_have_attribute("data-points", AT_LEAST_THREE)
        await expect(tab.page.locator("#stat-cpu")).to_have_text(re.compile(r"^\d+\.\d %$"))
        await expect(tab.page.locator("#stat-connections")).to_have_text(re.compile(r"^[1-9]\d*$"))

        monitor_sockets = [url for url in tab.sockets if "/monitor/ws" in url]
        assert monitor_sockets
        for url in monitor_sockets:
            assert "interval=0.2" in url
            ticket = claims_of(token_of(url))
            assert ticket["typ"] == "ticket"
            assert "item_id" not in ticket
        await expect(tab.page.locator("#charts")).to_have_attribute("data-points", AT_LEAST_TEN)
        await tab.screenshot("monitor")
        assert tab.page_errors == []
    finally:
        await tab.close()


async def test_the_monitor_page_asks_for_a_login(browser: Any, api: Api) -> None:
    tab = await Tab.open(browser, api.server.base_url)
    try:
        await tab.goto("/monitor")
        await expect(tab.page.locator("#auth")).to_be_visible()
        await expect(tab.page.locator("#dashboard")).to_be_hidden()
        assert [url for url in tab.sockets if "/monitor/ws" in url] == []
    finally:
        await tab.close()
