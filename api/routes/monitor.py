"""The operations monitor socket: `WS /monitor/ws` (its page is served by pages.py)."""

from __future__ import annotations

import logging
import math
from functools import partial

from fastapi import APIRouter, WebSocket
from starlette.types import Receive, Send

from api import metrics
from api.asgi import hand_off
from api.auth.credentials import Principal, echoed_subprotocol
from api.deps import EpochDep, RuntimeDep, SocketUser
from api.realtime import protocol
from api.routes.sockets import SocketSession, connection_for, outbox_for, too_many_sockets
from api.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])

DEFAULT_INTERVAL = 1.0
MIN_INTERVAL = 0.2
MAX_INTERVAL = 60.0


def parse_interval(raw: str | None) -> float:
    """Seconds between frames: the query value clamped to 0.2-60, 1 when absent or not a number."""
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    if math.isnan(value):
        return DEFAULT_INTERVAL
    return min(MAX_INTERVAL, max(MIN_INTERVAL, value))


class MonitorSession(SocketSession):
    """Takes ping and refresh only."""

    NAME = "the monitor"
    __slots__ = ()


@router.websocket("/monitor/ws")
async def monitor_socket(
    websocket: WebSocket, principal: SocketUser, runtime: RuntimeDep, epoch: EpochDep
) -> None:
    """Host and service figures every `interval` seconds (default 1, clamped to 0.2-60)."""
    interval = parse_interval(websocket.query_params.get("interval"))
    await websocket.accept(subprotocol=echoed_subprotocol(websocket))
    if too_many_sockets(runtime, principal.user_id):
        await websocket.close(protocol.TRY_AGAIN_LATER, protocol.TOO_MANY_SOCKETS)
        return
    # Served once this call has returned: nothing of the request stays alive.
    serve = partial(_serve, runtime, principal, epoch, interval)
    await hand_off(websocket.scope, serve, websocket.receive, websocket.send)


async def _serve(
    runtime: Runtime,
    principal: Principal,
    epoch: int,
    interval: float,
    receive: Receive,
    send: Send,
) -> None:
    connection = connection_for(runtime, receive, send)
    outbox = outbox_for(connection, runtime, principal)
    session = MonitorSession(runtime, principal, outbox)
    connection.watch(outbox, session.closing)
    context = {"user_id": principal.user_id, "interval": interval}
    log.info("monitor open", extra=context)
    metrics.OPEN_SOCKETS.inc()
    hub = runtime.hub
    try:
        # Registered like an item socket: revocations close it the same way.
        await hub.attach(outbox, epoch)
        if outbox.closing is None:
            session.arm_deadlines()
            runtime.stats.watch(outbox, interval)
        await connection.serve(outbox, (), session.handle)
    finally:
        runtime.stats.unwatch(outbox)
        session.disarm_deadlines()
        hub.detach(outbox)
        metrics.OPEN_SOCKETS.dec()
        closing = outbox.closing
        log.info(
            "monitor closed", extra={**context, "close_code": closing.code if closing else None}
        )
