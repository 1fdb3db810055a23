"""The item channel: `WS /items/{item_id}/ws`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from dataclasses import replace
from functools import partial

from fastapi import APIRouter, WebSocket
from starlette.types import Receive, Send

from api import metrics
from api.asgi import hand_off
from api.auth.credentials import Principal, echoed_subprotocol
from api.deps import ChannelAccess, ChannelAccessDep, runtime_of
from api.errors import Forbidden, NotFound
from api.items import messages
from api.items.messages import StoredMessage
from api.items.service import Access
from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.routes.sockets import SocketSession, TokenBucket, connection_for, outbox_for
from api.routes.sockets import too_many_sockets as over_user_cap
from api.routes.state_frames import StateFrames, wants_state
from api.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(tags=["channel"])

# Publishes of one socket waiting for their group commit before it stops reading.
MAX_INFLIGHT = 256


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
    # The store's figure (read by the checks) may run ahead of what reached this
    # process; frames up to it are then dropped as duplicates when they arrive.
    last_seq = max(channel.access.last_seq, hub.last_seq(item_id))
    if channel.since is not None and channel.since > last_seq:
        # The checks' figure may be cached and the broker may lag behind an ack the
        # client already holds: ask the store before saying "not recovered".
        latest = await hub.store.latest([item_id])
        last_seq = max(last_seq, latest.get(item_id, 0))
    standing = replace(channel.access, last_seq=last_seq)
    ready, start_after = _ready_frame(runtime, principal, standing, channel)
    outbox.last_seq = start_after
    outbox.catch_up_to = standing.last_seq
    return ready


def _ready_frame(
    runtime: Runtime, principal: Principal, standing: Access, channel: ChannelAccess
) -> tuple[str, int]:
    """The `ready` frame and the seq after which this socket's stream starts."""
    since = channel.since
    last_seq = standing.last_seq
    recovered = None
    start_after = last_seq
    if since is not None:
        retention = runtime.settings.message_retention
        oldest_kept = max(1, last_seq - retention + 1) if retention else 1
        recovered = since <= last_seq and since + 1 >= oldest_kept
        start_after = min(max(since, oldest_kept - 1), last_seq)
    frame = protocol.ReadyFrame(
        item_id=standing.item_id,
        user=protocol.UserInfo(id=principal.user_id, username=principal.username),
        role=standing.role.value,
        last_seq=last_seq,
        recovered=recovered,
        batch=channel.batch or None,
    )
    return protocol.encode(frame), start_after


class ChannelSession(SocketSession):
    """An item socket's frames: publishes besides what every socket takes."""

    __slots__ = ("_bucket", "_inflight", "_state_frames")

    def __init__(self, runtime: Runtime, principal: Principal, outbox: Outbox) -> None:
        super().__init__(runtime, principal, outbox)
        # Made by the first publish (or state change), like the queue of publishes in flight.
        self._bucket: TokenBucket | None = None
        # Made by the first publish: most sockets never publish.
        self._inflight: deque[asyncio.Future[StoredMessage]] | None = None
        # Made by the first `patch` or `action` frame.
        self._state_frames: StateFrames | None = None

    def bucket(self) -> TokenBucket:
        """The socket's frame budget, shared by publishes and state changes."""
        bucket = self._bucket
        if bucket is None:
            settings = self.runtime.settings
            bucket = self._bucket = TokenBucket(settings.ws_publish_rate, settings.ws_publish_burst)
        return bucket

    async def unparsed(self, text: str, error: protocol.FrameError) -> None:
        """`patch` and `action` frames are not the channel's own (api/routes/state_frames)."""
        state_frames = self._state_frames
        if state_frames is None:
            state_frames = self._state_frames = StateFrames(
                self.runtime, self.outbox, lambda: self.principal, self.bucket()
            )
        if not await state_frames.handle(text):
            await super().unparsed(text, error)

    async def publish(self, frame: protocol.PublishFrame) -> None:
        if not self.bucket().take():
            self.error(protocol.RATE_LIMITED, "publishing too fast; slow down", frame.ref)
            return
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = deque()
        while inflight and inflight[0].done():
            inflight.popleft()
        if len(inflight) >= MAX_INFLIGHT:
            # Backpressure: stop reading until the oldest publish is stored.
            await asyncio.wait([inflight[0]])
        # Not awaited: the next frames are read while this one waits for its group
        # commit. The writer checks the role in the storing transaction (it may have
        # changed since the handshake); answers go out in the order of the publishes.
        future = self.runtime.writer.submit(
            self.outbox.item_id,
            self.principal.user_id,
            self.principal.username,
            messages.encode_data(frame.data),
        )
        future.add_done_callback(partial(self._stored, frame.ref))
        inflight.append(future)

    def _stored(self, ref: str | None, future: asyncio.Future[StoredMessage]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            seq = future.result().seq
            self.outbox.push(0, protocol.ack_frame(ref, seq))
        elif isinstance(exc, Forbidden):
            self.error(protocol.FORBIDDEN, "readers cannot publish", ref)
        elif isinstance(exc, NotFound):
            self.outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
        else:
            self.error(protocol.UNAVAILABLE, "the message was not stored; publish it again", ref)

    async def settle(self) -> None:
        """Wait for the publishes in flight, so that answers keep the frames' order."""
        if self._inflight:
            await asyncio.wait(list(self._inflight))
            self._inflight = None
