"""Driving the pages: one `Tab` per user (its own browser context, so its own cookies)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, WebSocket, expect

from tests.processes import ROOT
from tests.support import PASSWORD

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000
# After a restart the page may be in a backoff of up to 30 s (the client's cap).
RECONNECT_TIMEOUT_MS = 45_000

# `expect` has its own default (5 s), separate from the contexts' default timeout.
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Tab:
    """A page of one user, recording what a test may want to check afterwards."""

    context: BrowserContext
    page: Page
    base_url: str
    sockets: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser, base_url: str) -> Tab:
        context = await browser.new_context(
            base_url=base_url, viewport={"width": 1200, "height": 820}
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        tab = cls(context, page, base_url)

        def on_socket(ws: WebSocket) -> None:
            tab.sockets.append(ws.url)

        async def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("websocket", on_socket)
        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: tab.page_errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        return tab

    async def close(self) -> None:
        await self.context.close()

    # Identity.

    async def goto(self, path: str = "/") -> None:
        await self.page.goto(path)

    async def register(self, username: str, password: str = PASSWORD) -> None:
        await self.goto("/")
        await self.page.fill("#username", username)
        await self.page.fill("#password", password)
        await self.page.click("#register")
        await expect(self.page.locator("#current-user")).to_have_text(username)

    async def login(self, username: str, password: str = PASSWORD, path: str = "/") -> None:
        await self.goto(path)
        await self.page.fill("#username", username)
        await self.page.fill("#password", password)
        await self.page.click("#login")
        await expect(self.page.locator("#current-user")).to_have_text(username)

    # Items and channels.

    async def create_item(self, name: str) -> str:
        await self.page.fill("#item-name", name)
        await self.page.click("#create")
        await expect(self.page.locator("#item-title")).to_have_text(name)
        match = re.search(r"#item=(.+)$", self.page.url)
        assert match, self.page.url
        return match.group(1)

    async def open_item(self, item_id: str) -> None:
        """Open an item from the list (reloaded first, so shared items show up)."""
        await self.goto("/")
        link = self.page.locator(f'.item-link[data-item-id="{item_id}"]')
        await link.click()
        await self.wait_live()

    async def wait_live(self, timeout: float = TIMEOUT_MS) -> None:
        status = self.page.locator("#channel-status")
        await expect(status).to_have_attribute("data-state", "open", timeout=timeout)

    async def publish(self, text: str) -> None:
        """Send from the page, and wait until the message comes back on the channel."""
        same = self.page.locator("#messages .text").filter(
            has_text=re.compile(f"^{re.escape(text)}$")
        )
        before = await same.count()
        await expect(self.page.locator("#message-input")).to_be_enabled()
        await self.page.fill("#message-input", text)
        await self.page.click("#send")
        await expect(same).to_have_count(before + 1)

    def lines(self) -> Any:
        return self.page.locator("#messages li.message")

    async def seqs(self) -> list[int]:
        return await self.lines().evaluate_all("els => els.map(e => Number(e.dataset.seq))")  # type: ignore[no-any-return]

    async def texts(self) -> list[str]:
        return await self.page.locator("#messages li.message .text").all_text_contents()

    async def wait_lines(self, count: int) -> None:
        await expect(self.lines()).to_have_count(count)

    async def online(self) -> list[str]:
        return await self.page.locator("#online li").all_text_contents()

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


def token_of(url: str) -> str:
    match = re.search(r"[?&]token=([^&]+)", url)
    assert match, f"no token in {url}"
    return match.group(1)
