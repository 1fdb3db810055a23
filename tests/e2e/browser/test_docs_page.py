"""`/docs` authenticates its calls: Authorize logs in with a username and password through
the OAuth2 password flow (/auth/token), and "Try it out" on GET /auth/me then answers as
that user, with the token as a bearer header. Swagger UI's scripts come from the service
itself, so this works without a CDN."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytest.importorskip("playwright.async_api", reason="playwright is not installed")

from playwright.async_api import Request, expect

from tests.e2e.browser.pages import Tab
from tests.support import PASSWORD, Api


async def test_authorize_in_docs_then_call_auth_me(browser: Any, api: Api) -> None:
    alice = await api.user()
    tab = await Tab.open(browser, api.server.base_url)
    requests: list[Request] = []
    tab.page.on("request", lambda request: requests.append(request))
    try:
        await tab.goto("/docs")
        page = tab.page
        await page.get_by_role("button", name="Authorize").first.click()
        dialog = page.locator(".auth-container").filter(has_text="password (OAuth2, password)")
        await dialog.locator("input#oauth_username").fill(alice.username)
        await dialog.locator("input#oauth_password").fill(PASSWORD)
        await dialog.locator("button.authorize").click()
        await expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
        await dialog.locator("button.btn-done").click()

        operation = page.locator("#operations-auth-me_auth_me_get")
        await operation.locator(".opblock-summary").click()
        await operation.get_by_role("button", name="Try it out").click()
        await operation.get_by_role("button", name="Execute").click()
        live = operation.locator(".live-responses-table")
        answer = live.locator("tr.response")
        await expect(answer.locator(".response-col_status")).to_have_text(re.compile("200"))
        body = await answer.locator(".response-col_description pre").first.inner_text()
        assert json.loads(body) == {"id": alice.id, "username": alice.username}

        (me,) = [r for r in requests if r.url.endswith("/auth/me")]
        assert (await me.all_headers())["authorization"].startswith("Bearer ")
        assert any(r.url.endswith("/auth/token") and r.method == "POST" for r in requests)
        # Every script and style of the page came from the service itself.
        assert all(r.url.startswith(api.server.base_url) for r in requests), [
            r.url for r in requests
        ]
        assert tab.page_errors == []
    finally:
        await tab.close()
