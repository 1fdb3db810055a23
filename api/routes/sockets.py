"""What every socket of the service shares once accepted: its connection and outbox,
ping, `refresh` (rate-limited), the credential deadlines, the per-user cap, the frame
budget, and where a resumed stream starts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel
from starlette.types import Receive, Send

from api.auth.credentials import Principal, TokenOfAnotherUser
from api.errors import AuthFailure
from api.realtime import protocol
from api.realtime.connection import Connection
from api.realtime.hub import Hub
from api.realtime.outbox import Outbox
from api.runtime import Runtime


def connection_for(runtime: Runtime, receive: Receive, send: Send) -> Connection:
    """The accepted socket, on the server's own `receive` and `send`."""
    return Connection(receive, send, runtime.settings.max_message_bytes)


def outbox_for(
    connection: Connection,
    runtime: Runtime,
    principal: Principal,
    item_id: str = "",
    batch: bool = False,
) -> Outbox:
    return Outbox(
        item_id=item_id,
        user_id=principal.user_id,
        username=principal.username,
        session_id=principal.session_id,
        send=connection.send_text,
        close=connection.send_close,
        fetch=runtime.hub.fetch,
        capacity=runtime.settings.ws_queue_size,
        batch=batch,
        spawn=connection.spawn,
    )


def refusal_code(exc: AuthFailure) -> str:
    """The `error` code answering a refused `refresh` frame."""
    return protocol.FORBIDDEN if isinstance(exc, TokenOfAnotherUser) else protocol.BAD_REQUEST


async def opening_last_seq(hub: Hub, item_id: str, checked: int, since: int | None) -> int:
    """The item's last seq for a stream opened now on this process.

    The figure read by the access checks may be cached, and the broker may lag behind an
    ack the client already holds: a resume (`since` given) asks the store, so that its
    `last_seq` is never below a seq the client was told of and "recovered" is decided on
    the stored figure. Frames up to it that reach the process later are dropped as
    duplicates."""
    last_seq = max(checked, hub.last_seq(item_id))
    if since is not None:
        latest = await hub.store.latest([item_id])
        last_seq = max(last_seq, latest.get(item_id, 0))
    return last_seq


def resume_point(since: int | None, last_seq: int, retention: int) -> tuple[bool | None, int]:
    """`recovered` for a stream opened at `last_seq` (None without `since`), and the seq
    after which it starts: `last_seq`, or with `since` the oldest kept message after it."""
    if since is None:
        return None, last_seq
    oldest_kept = max(1, last_seq - retention + 1) if retention else 1
    recovered = since <= last_seq and since + 1 >= oldest_kept
    return recovered, min(max(since, oldest_kept - 1), last_seq)


class SocketSession:
    """A client's frames on an accepted socket; the socket's own frames (publishes,
    state changes, subscriptions) are its subclass's to answer (`act`)."""

    # Who refuses frames it does not take ("the monitor takes no publish").
    NAME: ClassVar[str] = "this socket"
    # One per open socket: no instance dict.
    __slots__ = ("_bucket", "_deadline", "_refreshes", "outbox", "principal", "runtime")

    def __init__(self, runtime: Runtime, principal: Principal, outbox: Outbox) -> None:
        self.runtime = runtime
        self.principal = principal
        self.outbox = outbox
        self._deadline: asyncio.TimerHandle | None = None
        # Made by the first refresh: most sockets never send one.
        self._refreshes: TokenBucket | None = None
        # Made by the first frame that spends from it, as the refresh bucket.
        self._bucket: TokenBucket | None = None

    def bucket(self) -> TokenBucket:
        """The socket's frame budget (publishes, state changes, subscribes)."""
        bucket = self._bucket
        if bucket is None:
            settings = self.runtime.settings
            bucket = self._bucket = TokenBucket(settings.ws_publish_rate, settings.ws_publish_burst)
        return bucket

    def closing(self, outbox: Outbox) -> None:
        """A close was requested: nothing more is delivered to the socket."""
        self.runtime.hub.detach(outbox)
        self.disarm_deadlines()

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

    # Frames from the client.

    def error(
        self, code: str, detail: str, ref: str | None = None, item_id: str | None = None
    ) -> None:
        self.outbox.push(0, protocol.error_frame(code, detail, ref, item_id))

    def parse(self, text: str) -> BaseModel:
        return protocol.parse_client_frame(text)

    async def handle(self, text: str) -> None:
        try:
            frame = self.parse(text)
        except protocol.FrameError as exc:
            await self.settle()
            self.error(protocol.BAD_REQUEST, exc.detail, exc.ref, exc.item_id)
            return
        if isinstance(frame, protocol.PingFrame):
            await self.settle()
            self.outbox.push(0, protocol.PONG)
        elif isinstance(frame, protocol.RefreshFrame):
            await self.settle()
            await self.refresh(frame)
        else:
            await self.act(frame)

    async def act(self, frame: BaseModel) -> None:
        """A frame of the socket's own kinds (this one takes none)."""
        kind = getattr(frame, "type", "frame")
        self.error(
            protocol.BAD_REQUEST, f"{self.NAME} takes no {kind}", getattr(frame, "ref", None)
        )

    async def settle(self) -> None:
        """Wait for what must be answered before the next frame (changes in flight)."""

    async def refresh(self, frame: protocol.RefreshFrame) -> None:
        """The new token's `exp` and session govern the socket from now on."""
        settings = self.runtime.settings
        bucket = self._refreshes
        if bucket is None:
            bucket = self._refreshes = TokenBucket(
                settings.ws_refresh_rate, settings.ws_refresh_burst
            )
        if not bucket.take():
            # Each refresh may cost a database read: a flood of them is refused.
            self.error(protocol.RATE_LIMITED, "refreshing too often; slow down")
            return
        try:
            self.principal = await self.runtime.resolver.refreshed(self.principal, frame.token)
        except AuthFailure as exc:
            self.error(refusal_code(exc), exc.reason)
            return
        self.runtime.hub.move_session(self.outbox, self.principal.session_id)
        self.arm_deadlines()


def too_many_sockets(runtime: Runtime, user_id: str) -> bool:
    """MAX_SOCKETS_PER_USER counts item and monitor sockets of this process alike."""
    return runtime.hub.sockets_of_user(user_id) >= runtime.settings.max_sockets_per_user


class TokenBucket:
    """`rate` events per second on average, bursts of up to `burst`."""

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
