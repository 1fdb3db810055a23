"""The item channel: `WS /items/{item_id}/ws`."""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import replace
from functools import partial

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel
from starlette.types import Receive, Send

from api import metrics
from api.asgi import hand_off
from api.auth.credentials import Principal, echoed_subprotocol
from api.deps import ChannelAccess, ChannelAccessDep, runtime_of
from api.items.service import Access
from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.routes.publishes import Publishes
from api.routes.sockets import (
    connection_for,
    opening_last_seq,
    outbox_for,
    resume_point,
)
from api.routes.sockets import too_many_sockets as over_user_cap
from api.routes.state_frames import RATE_DETAIL, StateFrames, wants_state
from api.routes.writing import WritingSession
from api.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(tags=["channel"])


@router.websocket("/items/{item_id}/ws")
async def item_channel(websocket: WebSocket, channel: ChannelAccessDep) -> None:
    await websocket.accept(subprotocol=echoed_subprotocol(websocket))
    runtime, epoch = runtime_of(websocket), channel.epoch
    principal = channel.principal
    item_id = channel.access.item_id
    hub = runtime.hub
    if over_user_cap(runtime, principal.user_id):
        await websocket.close(protocol.TRY_AGAIN_LATER, protocol.TOO_MANY_SOCKETS)
        return
    if hub.sockets_on_item(item_id) >= runtime.settings.max_sockets_per_item:
        await websocket.close(protocol.TRY_AGAIN_LATER, protocol.ITEM_FULL)
        return
    # Served once this call has returned: nothing of the request stays alive.
    serve = partial(_serve, runtime, channel, epoch, wants_state(websocket))
    await hand_off(websocket.scope, serve, websocket.receive, websocket.send)


async def _serve(
    runtime: Runtime,
    channel: ChannelAccess,
    epoch: int,
    with_state: bool,
    receive: Receive,
    send: Send,
) -> None:
    principal = channel.principal
    item_id = channel.access.item_id
    hub = runtime.hub
    connection = connection_for(runtime, receive, send)
    outbox = outbox_for(connection, runtime, principal, item_id, channel.batch)
    session = ChannelSession(runtime, principal, outbox)
    connection.watch(outbox, session.closing)
    conn_id = secrets.token_hex(6)
    log.info("channel open", extra=_context(conn_id, principal, item_id))
    metrics.OPEN_SOCKETS.inc()
    try:
        # Attached: every revocation and message from now on reaches this socket, and
        # one applied since the credential checks closes it at once.
        await hub.attach(outbox, epoch)
        first: tuple[str, ...] = ()
        if outbox.closing is None:
            first = (await _start(runtime, principal, channel, outbox),)
            if with_state:  # the state snapshot, then its changes (api/items/state_hub)
                snapshot = await runtime.state_hub.attach(outbox)
                if snapshot is not None:
                    first += (snapshot,)
            session.arm_deadlines()
        await connection.serve(outbox, first, session.handle, opened=partial(hub.join, outbox))
    finally:
        closing = outbox.closing
        log.info(
            "channel closed",
            extra={
                **_context(conn_id, principal, item_id),
                "close_code": closing.code if closing else None,
            },
        )
        metrics.OPEN_SOCKETS.dec()
        session.disarm_deadlines()
        if with_state:
            runtime.state_hub.detach(outbox)
        hub.detach(outbox)
        with contextlib.suppress(Exception):
            await hub.leave(outbox)


def _context(conn_id: str, principal: Principal, item_id: str) -> dict[str, str]:
    # Built when logged: a dict kept for each socket's life costs memory.
    return {"conn_id": conn_id, "user_id": principal.user_id, "item_id": item_id}


async def _start(
    runtime: Runtime, principal: Principal, channel: ChannelAccess, outbox: Outbox
) -> str:
    """The `ready` frame; sets where the outbox's catch-up starts and ends."""
    hub = runtime.hub
    item_id = channel.access.item_id
    last_seq = await opening_last_seq(hub, item_id, channel.access.last_seq, channel.since)
    standing = replace(channel.access, last_seq=last_seq)
    ready, start_after = _ready_frame(runtime, principal, standing, channel)
    outbox.last_seq = start_after
    outbox.catch_up_to = standing.last_seq
    return ready


def _ready_frame(
    runtime: Runtime, principal: Principal, standing: Access, channel: ChannelAccess
) -> tuple[str, int]:
    """The `ready` frame and the seq after which this socket's stream starts."""
    recovered, start_after = resume_point(
        channel.since, standing.last_seq, runtime.settings.message_retention
    )
    frame = protocol.ReadyFrame(
        item_id=standing.item_id,
        user=protocol.UserInfo(id=principal.user_id, username=principal.username),
        role=standing.role.value,
        last_seq=standing.last_seq,
        recovered=recovered,
        batch=channel.batch or None,
    )
    return protocol.encode(frame), start_after


class ChannelSession(WritingSession):
    """An item socket's frames: publishes and state changes besides what every socket takes."""

    __slots__ = ()

    def __init__(self, runtime: Runtime, principal: Principal, outbox: Outbox) -> None:
        super().__init__(runtime, principal, outbox)

    async def act(self, frame: BaseModel) -> None:
        item_id = self.outbox.item_id
        if isinstance(frame, protocol.PublishFrame):
            if not self.bucket().take():
                self.error(protocol.RATE_LIMITED, "publishing too fast; slow down", frame.ref)
                return
            publishes = self._publishes
            if publishes is None:
                publishes = self._publishes = Publishes(self.runtime, self.outbox, self._current)
            await publishes.submit(item_id, frame.data, frame.ref)
        elif isinstance(frame, protocol.PatchFrame | protocol.ActionFrame):
            await self._settle_publishes()  # a change follows the publishes before it
            state_frames = self._state_frames
            if state_frames is None:
                state_frames = self._state_frames = StateFrames(
                    self.runtime, self.outbox, self._current
                )
            if not self.bucket().take():
                await state_frames.refuse(protocol.RATE_LIMITED, RATE_DETAIL, frame.ref, item_id)
                return
            await state_frames.submit(item_id, frame)
        else:
            await super().act(frame)
