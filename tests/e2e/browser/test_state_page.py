"""Item state on the channels page, in a real browser: a tic-tac-toe game played by two
users in two browser contexts (one reloading mid-game), and a document's JSON view."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from playwright.async_api import expect

from tests.e2e.browser.pages import Tab
from tests.servers import LiveServer
from tests.support import Api, unique


def cell(tab: Tab, n: int) -> Any:
    return tab.page.locator(f'#board .cell[data-cell="{n}"]')


async def play(tab: Tab, n: int, version: int, *others: Tab) -> None:
    """Click a cell, then wait until every page shows the move (the state's version)."""
    await tab.page.click(f'#board .cell[data-cell="{n}"]')
    for page in (tab, *others):
        await expect(page.page.locator("#state-panel")).to_have_attribute(
            "data-version", str(version)
        )


async def test_two_players_play_a_whole_game(browser: Any, server: LiveServer) -> None:
    x_name, o_name = unique("x"), unique("o")
    x = await Tab.open(browser, server.base_url)
    o = await Tab.open(browser, server.base_url)
    try:
        await x.register(x_name)
        await o.register(o_name)
        await x.page.select_option("#item-kind", "tictactoe")
        item_id = await x.create_item("A game")
        await x.wait_live()
        await x.page.fill("#share-username", o_name)
        await x.page.select_option("#share-role", "writer")
        await x.page.click("#share-button")
        await expect(x.page.locator("#members")).to_contain_text(o_name)
        await o.open_item(item_id)

        for tab in (x, o):
            await expect(tab.page.locator("#board .cell")).to_have_count(9)
            await expect(tab.page.locator("#game-status")).to_contain_text(f"X to move: {x_name}")
        # An illegal move is refused by the server and explained where it was made.
        await o.page.click('#board .cell[data-cell="4"]')
        await expect(o.page.locator("#game-error")).to_have_text("Illegal move: not your turn.")
        await expect(cell(o, 4)).to_have_text("")

        await play(x, 4, 1, o)
        await expect(o.page.locator("#game-status")).to_contain_text("O to move")
        await play(o, 0, 2, x)
        for tab in (x, o):
            await expect(cell(tab, 4)).to_have_text("X")
            await expect(cell(tab, 0)).to_have_text("O")
        await expect(x.page.locator("#game-status")).to_have_text(f"X to move: {x_name} (you)")

        # O reloads mid-game: the page reconnects and gets the board from the snapshot.
        await o.page.reload()
        await o.wait_live()
        await expect(o.page.locator("#state-panel")).to_have_attribute("data-version", "2")
        await expect(cell(o, 4)).to_have_text("X")
        await expect(cell(o, 0)).to_have_text("O")
        await expect(cell(o, 0)).to_be_disabled()  # taken

        await play(x, 1, 3, o)
        await play(o, 3, 4, x)
        await play(x, 7, 5, o)  # 1, 4, 7: the middle column
        for tab in (x, o):
            await expect(tab.page.locator("#game-status")).to_have_attribute("data-winner", "X")
            await expect(tab.page.locator("#board .cell:enabled")).to_have_count(0)
        await expect(x.page.locator("#game-status")).to_have_text(f"X wins: {x_name} (you)!")
        await expect(o.page.locator("#game-status")).to_have_text(f"X wins: {x_name}!")
        await x.screenshot("tictactoe-x")
        await o.screenshot("tictactoe-o")
        for tab in (x, o):
            assert tab.page_errors == []
    finally:
        await x.close()
        await o.close()


async def test_a_document_shows_its_json_and_version(browser: Any, api: Api) -> None:
    owner = await api.user()
    tab = await Tab.open(browser, api.server.base_url)
    try:
        await tab.login(owner.username, owner.password)
        item_id = await tab.create_item("Notes")
        await tab.wait_live()
        await expect(tab.page.locator("#state-version")).to_have_text("version 0")
        await expect(tab.page.locator("#document-json")).to_have_text("{}")
        r = await api.http.post(
            f"/items/{item_id}/state",
            json={"ops": [{"op": "add", "path": "/todo", "value": ["<b>milk</b>"]}]},
            headers=owner.headers,
        )
        assert r.status_code == 200, r.text
        await expect(tab.page.locator("#state-version")).to_have_text("version 1")
        await expect(tab.page.locator("#document-json")).to_have_text(
            '{\n  "todo": [\n    "<b>milk</b>"\n  ]\n}'
        )
        assert await tab.page.locator("#document-json b").count() == 0  # text, not markup
        await expect(tab.page.locator("#game")).to_be_hidden()
    finally:
        await tab.close()
