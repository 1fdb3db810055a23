"""The item channel: `WS /items/{item_id}/ws`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api import metrics
from api.asgi import text_sender
from api.auth.credentials import Principal, echoed_subprotocol
from api.deps import ChannelAccess, ChannelAccessDep, Runtime, RuntimeDep
from api.errors import AuthFailure, Forbidden, NotFound
from api.items import messages
from api.items.messages import StoredMessage
from api.items.service import Access
from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.routes.frames import read_frames, refusal_code
from api.routes.state_frames import StateFrames, wants_state

log = logging.getLogger(__name__)
router = APIRouter(tags=["channel"])

# How long a closing socket's writer may take to flush its close frame.
CLOSE_GRACE = 5.0
# Publishes of one socket waiting for their group commit before it stops reading.
MAX_INFLIGHT = 256


@router.websocket("/items/{item_id}/ws")
async def item_channel(
    websocket: WebSocket, channel: ChannelAccessDep, runtime: RuntimeDep
) -> None:
    await websocket.accept(subprotocol=echoed_subprotocol(websocket))
    principal = channel.principal
    item_id = channel.access.item_id
    hub = runtime.hub
    settings = runtime.settings
    if hub.sockets_of_user(principal.user_id) >= settings.max_sockets_per_user:
        await websocket.close(protocol.TRY_AGAIN_LATER, protocol.TOO_MANY_SOCKETS)
        return
    if hub.sockets_on_item(item_id) >= settings.max_sockets_per_item:
        await websocket.close(protocol.TRY_AGAIN_LATER, protocol.ITEM_FULL)
        return
    metrics.OPEN_SOCKETS.inc()
    outbox = Outbox(
        item_id=item_id,
        user_id=principal.user_id,
        username=principal.username,
        session_id=principal.session_id,
        send=text_sender(websocket.scope, websocket.send_text),
        close=_closer(websocket),
        fetch=hub.fetch,
        capacity=settings.ws_queue_size,
        batch=channel.batch,
    )
    socket = _Socket(runtime, outbox, principal)
    context = {"conn_id": secrets.token_hex(6), "user_id": principal.user_id, "item_id": item_id}
    log.info("channel open", extra=context)
    # From now on a requested close has CLOSE_GRACE to go out (see `abandon_later`).
    outbox.on_close = socket.abandon_later
    try:
        await hub.attach(outbox)
        # Attached: every revocation and message from now on reaches this socket. One
        # that came after the credential checks but before this is remembered by the hub.
        revoked = hub.revoked_recently(outbox)
        if revoked is not None:
            await websocket.close(protocol.POLICY_VIOLATION, revoked)
            return
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
        await websocket.send_text(ready)
        if wants_state(websocket):  # the state snapshot, then its changes (api/items/state_hub)
            snapshot = await runtime.state_hub.attach(outbox)
            if snapshot is not None:
                await websocket.send_text(snapshot)
        outbox.last_seq = start_after
        outbox.catch_up_to = standing.last_seq
        outbox.start()
        await hub.join(outbox)
        socket.arm_deadlines()
        close = await read_frames(websocket, settings.max_message_bytes, socket.handle)
        if close is not None:
            outbox.request_close(*close)
        if outbox.closing is not None:
            await outbox.wait_sent()
    except asyncio.CancelledError:
        # Our own doing when the close frame could not be sent within CLOSE_GRACE
        # (a peer that stopped reading): let go of the socket, don't wait forever.
        if not socket.abandoned:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
    finally:
        closing = outbox.closing
        log.info(
            "channel closed",
            extra={**context, "close_code": closing.code if closing else None},
        )
        metrics.OPEN_SOCKETS.dec()
        socket.stop()
        hub.detach(outbox)
        runtime.state_hub.detach(outbox)
        outbox.stop()
        with contextlib.suppress(Exception):
            await hub.leave(outbox)


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


def _closer(websocket: WebSocket) -> Callable[[int, str], Awaitable[None]]:
    async def close(code: int, reason: str) -> None:
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.close(code, reason)

    return close


class _Socket:
    """The reading side of one channel socket, and its credential deadlines."""

    def __init__(self, runtime: Runtime, outbox: Outbox, principal: Principal) -> None:
        self.runtime = runtime
        self.outbox = outbox
        self.principal = principal
        self.abandoned = False
        self._handler = asyncio.current_task()
        self._abandon_timer: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        settings = runtime.settings
        self._bucket = TokenBucket(settings.ws_publish_rate, settings.ws_publish_burst)
        # Made by the first publish: most sockets never publish.
        self._inflight: deque[asyncio.Future[StoredMessage]] | None = None
        # Made by the first frame that is not the channel's own.
        self._state_frames: StateFrames | None = None

    def abandon_later(self) -> None:
        """Called when a close is requested: if the close frame has not gone out within
        CLOSE_GRACE (the peer stopped reading), stop serving the socket."""
        if self._abandon_timer is None:
            loop = asyncio.get_running_loop()
            self._abandon_timer = loop.call_later(CLOSE_GRACE, self._abandon)

    def _abandon(self) -> None:
        if self._handler is not None and not self._handler.done():
            self.abandoned = True
            self._handler.cancel()

    # Deadlines: the session's expiry, and the current access token's.

    def arm_deadlines(self) -> None:
        """One timer, for whichever comes first (a timer per socket costs memory too)."""
        self.disarm_deadlines()
        deadline = self.principal.session_expires_at.timestamp()
        reason = protocol.SESSION_REVOKED
        token_exp = self.principal.token_exp
        if token_exp is not None and token_exp <= deadline:
            deadline, reason = token_exp, protocol.TOKEN_EXPIRED
        self._deadline = asyncio.get_running_loop().call_later(
            max(0.0, deadline - datetime.now(UTC).timestamp()),
            self.outbox.request_close,
            protocol.POLICY_VIOLATION,
            reason,
        )

    def disarm_deadlines(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def stop(self) -> None:
        self.disarm_deadlines()
        if self._abandon_timer is not None:
            self._abandon_timer.cancel()

    # Frames from the client.

    async def handle(self, text: str) -> None:
        try:
            frame = protocol.parse_client_frame(text)
        except protocol.FrameError as exc:
            await self.settle()
            # `patch` and `action` frames are not the channel's own (api/routes/state_frames).
            if self._state_frames is None:
                self._state_frames = StateFrames(
                    self.runtime, self.outbox, lambda: self.principal, self._bucket
                )
            if not await self._state_frames.handle(text):
                self.error(protocol.BAD_REQUEST, exc.detail, exc.ref)
            return
        if not isinstance(frame, protocol.PublishFrame):
            await self.settle()
        if isinstance(frame, protocol.PingFrame):
            self.outbox.push(0, protocol.PONG)
        elif isinstance(frame, protocol.PublishFrame):
            await self.publish(frame)
        else:
            await self.refresh(frame)

    def error(self, code: str, detail: str, ref: str | None = None) -> None:
        self.outbox.push(0, protocol.error_frame(code, detail, ref))

    async def publish(self, frame: protocol.PublishFrame) -> None:
        if not self._bucket.take():
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

    async def refresh(self, frame: protocol.RefreshFrame) -> None:
        try:
            self.principal = await self.runtime.resolver.refreshed(self.principal, frame.token)
        except AuthFailure as exc:
            self.error(refusal_code(exc), exc.reason)
            return
        self.runtime.hub.move_session(self.outbox, self.principal.session_id)
        self.arm_deadlines()


class TokenBucket:
    """`rate` publishes per second on average, bursts of up to `burst`."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
