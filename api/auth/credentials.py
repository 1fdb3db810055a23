"""One credential resolver for HTTP and WebSocket.

How a credential travels (query string, header, subprotocol, cookie) is read by
`presented_*`; how it becomes a user (JWT + server-side session, or session cookie +
Origin) is `CredentialResolver.resolve`. Both the REST dependency and the channel
dependency call the same resolver, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from api.auth import sessions
from api.auth.security import ACCESS, TICKET, TokenClaims, TokenCodec
from api.cache import TTLCache
from api.clock import utcnow
from api.errors import AuthFailure
from api.realtime.protocol import (
    INVALID_SESSION,
    INVALID_TOKEN,
    MISSING_CREDENTIALS,
    ORIGIN_NOT_ALLOWED,
)

SESSION_COOKIE = "session"
BEARER_SUBPROTOCOL = "bearer"

# Consumes a ticket's jti (True the first time, False after); shared by all workers.
TicketConsumer = Callable[[TokenClaims], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request or handshake carried."""

    token: str | None = None
    cookie: str | None = None
    origin: str | None = None
    own_origin: str = ""
    # More than one `session` cookie: which one the browser meant cannot be known (a
    # sibling domain may have planted one), so none is used.
    cookie_ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    username: str
    session_id: str
    session_expires_at: datetime
    via: Literal["token", "ticket", "cookie"]
    token_exp: int | None = None


def _own_origin(conn: HTTPConnection) -> str:
    # The scope's scheme is what `conn.url.scheme` gives, without building the URL.
    scheme = conn.scope.get("scheme", "http")
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return f"{scheme}://{conn.headers.get('host', '')}"


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _session_cookies(conn: HTTPConnection) -> int:
    """How many `session` cookies the request carries (Starlette keeps only one)."""
    count = 0
    for header in conn.headers.getlist("cookie"):
        if SESSION_COOKIE in header:
            count += sum(
                1 for pair in header.split(";") if pair.split("=", 1)[0].strip() == SESSION_COOKIE
            )
    return count


def presented_by_request(conn: HTTPConnection) -> Presented:
    return Presented(
        token=_bearer(conn.headers.get("authorization")),
        cookie=conn.cookies.get(SESSION_COOKIE) or None,
        origin=conn.headers.get("origin"),
        own_origin=_own_origin(conn),
        cookie_ambiguous=_session_cookies(conn) > 1,
    )


def echoed_subprotocol(conn: HTTPConnection) -> str | None:
    """The subprotocol to accept a socket with: `bearer` when offered (browsers fail a
    handshake whose offered subprotocol is not echoed), refusals included."""
    return BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in conn.scope.get("subprotocols", ()) else None


def presented_by_websocket(conn: HTTPConnection) -> Presented:
    """Query `token`, then `Authorization: Bearer`, then `bearer, <token>` subprotocols."""
    subprotocols: list[str] = conn.scope.get("subprotocols", [])
    token = conn.query_params.get("token") or _bearer(conn.headers.get("authorization"))
    if token is None and BEARER_SUBPROTOCOL in subprotocols:
        after = subprotocols[subprotocols.index(BEARER_SUBPROTOCOL) + 1 :]
        token = after[0] if after else None
    return Presented(
        token=token or None,
        cookie=conn.cookies.get(SESSION_COOKIE) or None,
        origin=conn.headers.get("origin"),
        own_origin=_own_origin(conn),
        cookie_ambiguous=_session_cookies(conn) > 1,
    )


class TokenOfAnotherUser(AuthFailure):
    """A `refresh` frame carried a valid token, but not of the socket's user."""

    def __init__(self) -> None:
        super().__init__("the token belongs to another user")


class CredentialResolver:
    """Turns a presented credential into a `Principal` or raises `AuthFailure(reason)`."""

    def __init__(
        self,
        codec: TokenCodec,
        session_factory: async_sessionmaker[AsyncSession],
        allowed_origins: tuple[str, ...],
        consume_ticket: TicketConsumer | None = None,
        session_cache_ttl: float = 0.0,
    ) -> None:
        self._codec = codec
        self._session_factory = session_factory
        self._allowed_origins = allowed_origins
        self._consume_ticket = consume_ticket
        # Sessions by id, so that a handshake or request with a token needs no query.
        # A revocation evicts at once (here through `forget_session`, elsewhere through
        # the broker); the TTL bounds staleness if such a message is ever lost.
        self._sessions: TTLCache[str, sessions.ActiveSession] = TTLCache(session_cache_ttl)

    def forget_session(self, session_id: str) -> None:
        self._sessions.pop(session_id)

    def forget_all_sessions(self) -> None:
        self._sessions.clear()

    def origin_allowed(self, presented: Presented) -> bool:
        if presented.origin is None:
            return False
        allowed = self._allowed_origins or (presented.own_origin,)
        return presented.origin.rstrip("/") in allowed

    async def resolve(
        self,
        presented: Presented,
        *,
        check_origin: bool,
        accept_tickets: bool = False,
        item_id: str | None = None,
    ) -> Principal:
        """Check in the contract's order: presence, token claims, expiry, session; or
        for a cookie, Origin (when `check_origin`), then session."""
        if presented.token is not None:
            return await self._from_token(presented.token, accept_tickets, item_id)
        if presented.cookie is not None:
            if check_origin and not self.origin_allowed(presented):
                raise AuthFailure(ORIGIN_NOT_ALLOWED)
            if presented.cookie_ambiguous:
                raise AuthFailure(INVALID_SESSION)
            return await self._from_cookie(presented.cookie)
        raise AuthFailure(MISSING_CREDENTIALS)

    async def _from_token(self, token: str, accept_tickets: bool, item_id: str | None) -> Principal:
        claims = self._codec.decode(token, types=(ACCESS, TICKET) if accept_tickets else (ACCESS,))
        if claims.typ == TICKET:
            # Consumed by its first presentation, whatever happens next.
            if self._consume_ticket is None or not await self._consume_ticket(claims):
                raise AuthFailure(INVALID_TOKEN)
            if claims.item_id is not None and claims.item_id != item_id:
                raise AuthFailure(INVALID_TOKEN)
        active = await self._session(claims.sid)
        if active.user_id != claims.sub:
            raise AuthFailure(INVALID_TOKEN)
        if claims.typ == TICKET:
            return _principal(active, "ticket")
        return _principal(active, "token", claims.exp)

    async def refreshed(self, current: Principal, token: str) -> Principal:
        """Who an open socket continues as after a `refresh` frame: the new access
        token's user (who must be the same) under that token's session and `exp`.
        Raises `TokenOfAnotherUser`, or `AuthFailure` for an invalid token or session."""
        claims = self._codec.decode(token)
        if claims.sub != current.user_id:
            raise TokenOfAnotherUser
        return _principal(await self._session(claims.sid), "token", claims.exp)

    async def _session(self, session_id: str) -> sessions.ActiveSession:
        """The active session by id, from the cache when it holds it."""
        active = self._sessions.get(session_id)
        if active is None or active.expires_at <= utcnow():
            # One read for every caller missing it at once; a revocation landing
            # during the read keeps it uncached.
            active = await self._sessions.load(session_id, partial(self._read, session_id))
            if active is None:
                raise AuthFailure(INVALID_SESSION)
        return active

    async def _read(self, session_id: str) -> sessions.ActiveSession | None:
        async with self._session_factory() as db:
            return await sessions.by_id(db, session_id)

    async def _from_cookie(self, cookie: str) -> Principal:
        if len(cookie) > 256:
            raise AuthFailure(INVALID_SESSION)
        async with self._session_factory() as db:
            active = await sessions.by_secret(db, cookie)
        if active is None:
            raise AuthFailure(INVALID_SESSION)
        return _principal(active, "cookie")


def _principal(
    active: sessions.ActiveSession,
    via: Literal["token", "ticket", "cookie"],
    token_exp: int | None = None,
) -> Principal:
    return Principal(
        user_id=active.user_id,
        username=active.username,
        session_id=active.session_id,
        session_expires_at=active.expires_at,
        via=via,
        token_exp=token_exp,
    )
