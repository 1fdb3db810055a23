"""Many items on one socket: `WS /ws`.

The handshake's checks are the item channel's credential checks (one resolver, the
same reasons in the same order), without an item; each item is then checked when it
is subscribed to (api/routes/multiplex_session.py).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from functools import partial

from fastapi import APIRouter, WebSocket
from starlette.types import Receive, Send

from api import metrics
from api.asgi import hand_off
from api.auth.credentials import Principal, echoed_subprotocol
from api.deps import EpochDep, RuntimeDep, SocketUser
from api.realtime import multiplex_frames as mux
from api.realtime import protocol
from api.routes.multiplex_session import MultiplexSession
from api.routes.sockets import connection_for, outbox_for, too_many_sockets
from api.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(tags=["channel"])


@router.websocket("/ws")
async def multiplex_socket(
    websocket: WebSocket, principal: SocketUser, runtime: RuntimeDep, epoch: EpochDep
) -> None:
    """Any number of item subscriptions (up to MAX_SUBSCRIPTIONS) on one socket."""
    await websocket.accept(subprotocol=echoed_subprotocol(websocket))
    if too_many_sockets(runtime, principal.user_id):
        await websocket.close(protocol.TRY_AGAIN_LATER, protocol.TOO_MANY_SOCKETS)
        return
    # Served once this call has returned: nothing of the request stays alive.
    await hand_off(
        websocket.scope,
        partial(_serve, runtime, principal, epoch),
        websocket.receive,
        websocket.send,
    )


async def _serve(
    runtime: Runtime, principal: Principal, epoch: int, receive: Receive, send: Send
) -> None:
    hub = runtime.hub
    connection = connection_for(runtime, receive, send)
    # On no item: each subscription is a cursor of its own on this one outbox.
    outbox = outbox_for(connection, runtime, principal)
    session = MultiplexSession(runtime, principal, outbox)
    connection.watch(outbox, session.closing)
    conn_id = secrets.token_hex(6)
    log.info("multiplex open", extra={"conn_id": conn_id, "user_id": principal.user_id})
    metrics.OPEN_SOCKETS.inc()
    try:
        # Registered like an item socket: session revocations close it the same way.
        await hub.attach(outbox, epoch)
        first: tuple[str, ...] = ()
        if outbox.closing is None:
            ready = mux.ready_frame(
                principal.user_id, principal.username, runtime.settings.max_subscriptions
            )
            first = (ready,)
            session.arm_deadlines()
        await connection.serve(outbox, first, session.handle)
    finally:
        closing = outbox.closing
        log.info(
            "multiplex closed",
            extra={
                "conn_id": conn_id,
                "user_id": principal.user_id,
                "close_code": closing.code if closing else None,
            },
        )
        metrics.OPEN_SOCKETS.dec()
        session.disarm_deadlines()
        hub.detach(outbox)
        for subscription in session.end_all():
            with contextlib.suppress(Exception):
                await hub.leave(subscription)
