"""FastAPI dependencies, as `Annotated` aliases the routes declare."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, WebSocket, WebSocketException, status
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from api.auth.credentials import (
    OriginRefused,
    Principal,
    presented_by_request,
    presented_by_websocket,
)
from api.errors import AuthFailure, NotFound
from api.items.access import cached_access
from api.items.service import Access
from api.items.writer import MessageWriter
from api.patterns import ITEM_ID_RE
from api.realtime import protocol
from api.realtime.hub import Hub
from api.runtime import Runtime

SINCE_RE = re.compile(r"[0-9]+")


def runtime_of(conn: HTTPConnection) -> Runtime:
    """The process's runtime, for the dependencies of hot routes: FastAPI solves a
    sub-dependency again (its own sub-dependencies, its parameters) each time it is
    declared, cached or not, so they take it from here rather than from `RuntimeDep`."""
    return conn.app.state.runtime  # type: ignore[no-any-return]


async def get_runtime(conn: HTTPConnection) -> Runtime:
    # `async` although it never waits: FastAPI runs a plain `def` dependency in a worker
    # thread, a thread hop on every request and handshake.
    return runtime_of(conn)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_hub(runtime: RuntimeDep) -> Hub:
    return runtime.hub


async def get_writer(runtime: RuntimeDep) -> MessageWriter:
    return runtime.writer


HubDep = Annotated[Hub, Depends(get_hub)]
WriterDep = Annotated[MessageWriter, Depends(get_writer)]


async def handshake_epoch(conn: HTTPConnection) -> int:
    """The control plane's epoch before a socket's checks (see `Hub.attach`)."""
    return runtime_of(conn).hub.control.epoch


EpochDep = Annotated[int, Depends(handshake_epoch)]


async def get_db(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.session_factory() as db:
        yield db


DbDep = Annotated[AsyncSession, Depends(get_db)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def current_principal(request: Request) -> Principal:
    """The caller of a REST endpoint, from a bearer token or the session cookie (whose
    Origin rule, the resolver's, answers 403)."""
    runtime = runtime_of(request)
    try:
        return await runtime.resolver.resolve(presented_by_request(request))
    except OriginRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=exc.reason) from exc
    except AuthFailure as exc:
        raise unauthorized(exc.reason) from exc


CurrentUser = Annotated[Principal, Depends(current_principal)]

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
# Endpoints that call `current_principal` themselves, for the OpenAPI document.
AUTHENTICATED_INSIDE: set[Callable[..., Any]] = set()


def authenticates_itself(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint that calls `current_principal` in its body rather than declaring
    `CurrentUser`: on the hottest route, one dependency fewer for FastAPI to solve (see
    bench/PROFILES.md). It needs a credential all the same."""
    AUTHENTICATED_INSIDE.add(endpoint)
    return endpoint


class ChannelRejected(WebSocketException):
    """Refuse a socket with 1008; the app's handler accepts first so the code arrives."""

    def __init__(self, reason: str) -> None:
        super().__init__(code=protocol.POLICY_VIOLATION, reason=reason)


@dataclass(frozen=True, slots=True)
class ChannelAccess:
    """An authenticated, authorised socket that has not been accepted yet."""

    principal: Principal
    access: Access
    since: int | None
    epoch: int  # the control plane's, taken before any credential was read
    batch: bool = False


async def websocket_principal(websocket: WebSocket, _epoch: EpochDep) -> Principal:
    """The caller of a socket, or `ChannelRejected` naming the first failed check.

    Depends on the epoch so that it is taken before any credential is read."""
    return await _socket_principal(websocket)


async def _socket_principal(websocket: WebSocket) -> Principal:
    presented = presented_by_websocket(websocket)
    item_id = websocket.path_params.get("item_id")
    try:
        return await runtime_of(websocket).resolver.resolve(
            presented, accept_tickets=True, item_id=item_id
        )
    except AuthFailure as exc:
        raise ChannelRejected(exc.reason) from exc


SocketUser = Annotated[Principal, Depends(websocket_principal)]


async def channel_access(websocket: WebSocket, item_id: str, epoch: EpochDep) -> ChannelAccess:
    """Credentials, then item access, then `since`: the channel's handshake checks.

    One dependency rather than one per check (each one FastAPI solves costs more than
    the check); the epoch, its only sub-dependency, is taken before them."""
    principal = await _socket_principal(websocket)
    if not ITEM_ID_RE.fullmatch(item_id):
        raise ChannelRejected(protocol.FORBIDDEN)
    runtime = runtime_of(websocket)
    try:
        standing = await cached_access(
            runtime.access_cache, runtime.session_factory, item_id, principal.user_id
        )
    except NotFound as exc:
        raise ChannelRejected(protocol.FORBIDDEN) from exc
    raw_since = websocket.query_params.get("since")
    if raw_since is not None and not SINCE_RE.fullmatch(raw_since):
        raise ChannelRejected(protocol.INVALID_SINCE)
    since = None
    if raw_since is not None:
        # Anything past any possible seq is simply "above last_seq"; skip parsing huge ints.
        since = int(raw_since) if len(raw_since) <= 18 else 10**18
    # Opt-in; any other value leaves it off (the `ready` frame says when it is on).
    batch = websocket.query_params.get("batch") == "1"
    return ChannelAccess(principal, standing, since, epoch, batch)


ChannelAccessDep = Annotated[ChannelAccess, Depends(channel_access)]
