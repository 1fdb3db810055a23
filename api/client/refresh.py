"""The access token a client holds, and renewing it from its session before it expires."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from api.client.errors import HTTPError, ProtocolError, ServerUnavailable

log = logging.getLogger("api.client")

SESSION_COOKIE = "session"
# Renew a fifth of the token's lifetime before `exp`, at most a minute before; short-lived
# tokens get up to half their lifetime (at most 5 s) so a busy loop still renews in time.
RENEW_SHARE = 0.2
RENEW_SHORT = 5.0
RENEW_MAX = 60.0


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, read without verifying it (only for `exp` and `iat`): the
    server verifies; the client only needs to know when to renew."""
    try:
        payload = token.split(".")[1]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


class Tokens:
    """The client's current access token, shared by its REST calls and its channels.

    Renewal goes through `POST /auth/refresh`: with the token while it is valid, with the
    `session` cookie (kept by `login`) once it has expired. One renewal at a time.
    """

    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self._http = http
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None
        self._lifetime = 0.0
        if token is not None:
            self.set(token)

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def has_session(self) -> bool:
        """A session cookie is held: a fresh token can be had even after this one expired."""
        return self._http.cookies.get(SESSION_COOKIE) is not None

    def set(self, token: str | None, expires_in: float | None = None) -> None:
        self._token = token
        if token is None:
            self._expires_at = None
            return
        claims = claims_of(token)
        exp, iat = claims.get("exp"), claims.get("iat")
        if isinstance(exp, int | float):
            self._expires_at = float(exp)
            self._lifetime = float(exp - iat) if isinstance(iat, int | float) else 0.0
        elif expires_in is not None:
            self._expires_at = time.time() + expires_in
            self._lifetime = expires_in
        else:
            self._expires_at = None

    def expired(self) -> bool:
        return self._expires_at is not None and time.time() >= self._expires_at

    def renew_at(self) -> float | None:
        """When (epoch seconds) the token should be renewed; None if it never expires."""
        if self._expires_at is None:
            return None
        lifetime = self._lifetime or 2 * RENEW_SHORT  # no `iat`: assume a short token
        margin = min(RENEW_MAX, max(lifetime * RENEW_SHARE, min(RENEW_SHORT, lifetime / 2)))
        return self._expires_at - margin

    def can_renew(self) -> bool:
        return self._token is not None and (self.has_session or not self.expired())

    async def current(self) -> str | None:
        """The token to present now, renewed first when it is due and can be."""
        due = self.renew_at()
        if due is not None and time.time() >= due and self.can_renew():
            try:
                await self.renew()
            except (HTTPError, ServerUnavailable, ProtocolError) as exc:
                # The caller presents what it has; the server's answer says what is wrong.
                log.warning("could not renew the access token: %s", exc)
        return self._token

    async def renew(self) -> dict[str, Any]:
        """`POST /auth/refresh`; its answer. Concurrent callers share one call."""
        before = self._token
        async with self._lock:
            if self._token != before and self._token is not None and not self.expired():
                # Someone else renewed it while we waited.
                return {"access_token": self._token, "token_type": "bearer"}
            headers = {}
            if self._token is not None and not self.expired():
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                response = await self._http.post("/auth/refresh", headers=headers)
            except httpx.TransportError as exc:
                raise ServerUnavailable(f"POST /auth/refresh: {exc!r}") from exc
            if response.status_code != 200:
                detail = response_detail(response)
                raise HTTPError("POST", "/auth/refresh", response.status_code, detail)
            body = _json_object(response, "POST /auth/refresh")
            token = body.get("access_token")
            if not isinstance(token, str):
                raise ProtocolError("POST /auth/refresh: no access_token in the answer")
            expires_in = body.get("expires_in")
            self.set(token, float(expires_in) if isinstance(expires_in, int | float) else None)
            return body

    async def renew_after_expiry(self) -> bool:
        """After a `token expired` close: is a newer, valid token at hand (renewing it from
        the session if need be)?"""
        if self._token is not None and not self.expired():
            return True
        if not self.has_session:
            return False
        try:
            await self.renew()
        except (HTTPError, ProtocolError) as exc:
            log.warning("the session could not renew the access token: %s", exc)
            return False
        return True


async def keep_token_fresh(tokens: Tokens, send: Callable[[str], Awaitable[None]]) -> None:
    """Send an open socket a `refresh` frame before its token expires, so it stays open
    (the server closes it with `token expired` at the `exp` of its current token)."""
    sent = tokens.token
    while True:
        due = tokens.renew_at()
        if due is None:
            return
        await asyncio.sleep(max(0.0, due - time.time()))
        token = await tokens.current()
        if token is not None and token != sent:
            await send(json.dumps({"type": "refresh", "token": token}))
            sent = token
        elif tokens.expired() or not tokens.can_renew():
            return  # the server closes with `token expired`; the channel renews then
        else:
            await asyncio.sleep(1.0)  # renewal failed (server busy?): try again


def response_detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("detail", body) if isinstance(body, dict) else body


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ProtocolError(f"{what}: the answer is not JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body
