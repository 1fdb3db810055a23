"""One item channel (`/items/{id}/ws`) that survives drops: reconnect, resume, dedupe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from api.client import frames
from api.client.errors import (
    ChannelClosed,
    ChannelRefused,
    HTTPError,
    NotRecovered,
    ProtocolError,
    ServerUnavailable,
)
from api.client.logs import websocket_logger
from api.client.publishing import Publisher
from api.client.refresh import Tokens, keep_token_fresh
from api.client.retry import Backoff
from api.client.types import Message

log = logging.getLogger("api.client")

# Closes worth reconnecting after (with `since`): going away, server error, restart, try
# again later (slow consumer, broker or store unavailable, limits), and drops (1006).
RETRIED_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
_END = object()  # queued once the channel is over; every later read sees it again


class Channel:
    """Messages of one item, each exactly once and in seq order, across reconnects.

    Use as `async with client.channel(item_id, since=N) as channel:`; entering waits for
    the first `ready` (retrying while the server is unreachable) and raises
    `ChannelRefused` if the server refuses. Iterate with `async for message in channel`
    — several loops one after another continue where the previous one stopped. A drop or
    a 1001/1011/1012/1013 close reconnects with backoff and `since=<last seq received>`;
    a 1008 close raises `ChannelRefused` from the iterator (and from `publish`), except
    `token expired` when the client can renew its token. Messages are buffered until read.
    """

    def __init__(
        self,
        url: str,
        tokens: Tokens,
        *,
        since: int | None,
        backoff: Backoff,
        publish_timeout: float,
        on_presence: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        if since is not None and (isinstance(since, bool) or since < 0):
            raise ValueError("since must be a non-negative integer")
        self._url = url
        self._tokens = tokens
        self._backoff = backoff
        self._on_presence = on_presence
        self._last_seq = since
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._publisher = Publisher(publish_timeout)
        self._closed_by_user = False
        self._jump = False  # after `recovered: false`, the next seq may skip ahead
        self._first_ready: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: The latest `presence` frame, or None before the first.
        self.presence: dict[str, Any] | None = None
        #: The `ready` frame of the current (or last) connection.
        self.ready: dict[str, Any] | None = None
        #: How many times the channel set out to reconnect after a connection ended.
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """A socket is open and ready (publishes go out at once)."""
        return self._publisher.socket is not None

    @property
    def last_seq(self) -> int | None:
        """The seq of the last message received (queued for iteration)."""
        return self._last_seq

    async def __aenter__(self) -> Channel:
        self._first_ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        try:
            await self._first_ready
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publisher.failure is None:
            self._closed_by_user = True
        self._finish(ChannelClosed(1000, "closed by the client"))

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Message:
        self._check_entered()
        entry = await self._inbox.get()
        if entry is _END:
            self._inbox.put_nowait(_END)
            if self._closed_by_user:
                raise StopAsyncIteration
            assert self._publisher.failure is not None
            raise self._publisher.failure
        if isinstance(entry, NotRecovered):
            raise entry
        return entry  # type: ignore[no-any-return]

    async def publish(self, data: Any, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Store `data` as a message of the item; its seq, once acknowledged.

        Waits (within `timeout`) for a connection while reconnecting; raises
        `PublishError` (`.code`) on an error frame, a timeout or a lost connection.
        Concurrent calls are pipelined on the socket and matched to their acks by ref.
        """
        self._check_entered()
        return await self._publisher.publish(data, timeout)

    # The connection loop.

    async def _run(self) -> None:
        attempt = 0
        renewed = False  # one token renewal per streak of `token expired` closes
        try:
            while True:
                try:
                    ws = await self._open()
                except (OSError, TimeoutError, InvalidHandshake, ServerUnavailable) as exc:
                    log.info("channel connect failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(self._backoff.delay(attempt))
                    attempt += 1
                    continue
                code, reason, was_ready = await self._serve(ws)
                if was_ready:
                    attempt, renewed = 0, False
                if code == 1008:
                    if reason != "token expired" or renewed:
                        raise ChannelRefused(code, reason)
                    try:
                        if not await self._tokens.renew_after_expiry():
                            raise ChannelRefused(code, reason)
                    except ServerUnavailable:
                        pass  # renewed on the next attempt
                    else:
                        renewed = True
                        self.reconnects += 1
                        continue
                elif code not in RETRIED_CODES:
                    raise ChannelClosed(code, reason)
                log.info(
                    "channel closed (%s %r); resuming after seq %s", code, reason, self._last_seq
                )
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1
                self.reconnects += 1
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._finish(exc)

    async def _open(self) -> ClientConnection:
        token = await self._tokens.current()
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        # Batches: several frames in one when many wait (a replay, a burst), unpacked here.
        query = "batch=1" if self._last_seq is None else f"batch=1&since={self._last_seq}"
        url = f"{self._url}?{query}"
        try:
            return await connect(
                url, additional_headers=headers, open_timeout=10, logger=websocket_logger
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status >= 500:
                raise  # restarting or overloaded: retried
            raise HTTPError("GET", self._url, status, "handshake refused") from exc

    async def _serve(self, ws: ClientConnection) -> tuple[int, str, bool]:
        """Read `ws` until it closes: its close code and reason, and whether it was ready."""
        keeper: asyncio.Task[None] | None = None
        was_ready = False
        try:
            async with ws:
                self._on_ready(frames.decode(await ws.recv()))
                was_ready = True
                self._publisher.attach(ws)
                keeper = asyncio.create_task(keep_token_fresh(self._tokens, ws.send))
                while True:
                    for frame in frames.unpack(frames.decode(await ws.recv())):
                        if not self._on_frame(frame):
                            return 1006, "gap", was_ready  # leaving `async with` closes ws
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                return 1006, "", was_ready
            return exc.rcvd.code, exc.rcvd.reason, was_ready
        finally:
            if keeper is not None:
                keeper.cancel()
            self._publisher.attach(None)

    def _on_ready(self, frame: dict[str, Any]) -> None:
        if frame["type"] != "ready":
            raise ProtocolError(f"expected a 'ready' frame first, got {frame['type']!r}")
        last_seq = frames.field(frame, "last_seq", int)
        self.ready = frame
        recovered = frame.get("recovered")
        if recovered is False and self._last_seq is not None:
            self._inbox.put_nowait(NotRecovered(self._last_seq, last_seq))
            if self._last_seq > last_seq:
                self._last_seq = last_seq  # the server has fewer messages than we saw
            else:
                self._jump = True  # replay starts at the oldest kept message
        elif self._last_seq is None:
            self._last_seq = last_seq
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_result(None)

    def _on_frame(self, frame: dict[str, Any]) -> bool:
        """Handle one frame; False when a message is missing before this one."""
        kind = frame["type"]
        if kind == "message":
            message = frames.message(frame)
            seq = message["seq"]
            if self._last_seq is not None and seq <= self._last_seq:
                return True  # already received (a resume overlaps what came before)
            if self._jump:
                self._jump = False
            elif self._last_seq is not None and seq != self._last_seq + 1:
                log.warning("seq %s after %s: resuming to fill the gap", seq, self._last_seq)
                return False
            self._last_seq = seq
            self._inbox.put_nowait(message)
        elif kind == "ack":
            self._publisher.acks.acked(frame.get("ref"), frames.field(frame, "seq", int))
        elif kind == "error":
            code = frames.field(frame, "code", str)
            detail = str(frame.get("detail", ""))
            if not self._publisher.acks.refused(frame.get("ref"), code, detail):
                log.warning("channel error frame: %s: %s", code, detail)
        elif kind == "presence":
            self.presence = frame
            if self._on_presence is not None:
                self._on_presence(frame)
        elif kind == "ready":
            raise ProtocolError("a second 'ready' frame on one socket")
        # pong, and frame types added later: nothing to do.
        return True

    # State shared with publishers and readers.

    def _check_entered(self) -> None:
        if self._task is None:
            raise RuntimeError("open the channel first: `async with client.channel(...)`")

    def _finish(self, failure: BaseException) -> None:
        if self._publisher.failure is not None:
            return
        log.debug("channel ended: %s", failure)
        self._publisher.fail(failure)
        self._inbox.put_nowait(_END)
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_exception(failure)
            self._first_ready.exception()  # retrieved by __aenter__; no "never retrieved"
