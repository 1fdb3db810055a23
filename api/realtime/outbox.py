"""One socket's outbound side: a bounded queue, sent in `seq` order, without a task when idle."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from api import metrics
from api.realtime import protocol
from api.realtime.eager import start_eagerly

if TYPE_CHECKING:
    from api.realtime.hub import Hub

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
# (item_id, after, upto) -> [(seq, frame text)] for after < seq <= upto, ascending.
FetchRange = Callable[[str, int, int], Awaitable[list[tuple[int, str]]]]

FILL_PAGE = 500
# A batch stays below the 1 MiB frame limit most WebSocket clients default to.
BATCH_MAX_FRAMES = 1000
BATCH_MAX_BYTES = 768 * 1024
_BATCH_HEAD = '{"type":"batch","frames":['


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Outbox:
    """Frames for one socket, sent in order: message frames by `seq`, with duplicates
    dropped and gaps filled from the store, so every socket gets every message once.

    Frames pushed onto an idle outbox are sent by a callback at the end of the event-loop
    turn, without a task; only a send that must wait (the socket's buffer is full)
    leaves a task behind to finish the queue.

    Overflow policy: when `capacity` frames are waiting, the socket is detached at
    once (nothing more is queued for it), its queue is dropped, and it is closed with
    1013 `slow consumer`; the client reconnects with `since` and loses nothing.

    Batched (opt-in): the frames sent together that way, and those queued while a send
    waits, go out as one `batch` frame.
    """

    __slots__ = (
        "_batch",
        "_capacity",
        "_close",
        "_closing",
        "_draining",
        "_fetch",
        "_gone",
        "_hub",
        "_kick_handle",
        "_queue",
        "_send",
        "_started",
        "_task",
        "catch_up_to",
        "item_id",
        "last_seq",
        "on_close",
        "session_id",
        "user_id",
        "username",
    )

    def __init__(
        self,
        *,
        item_id: str,
        user_id: str,
        username: str,
        session_id: str,
        send: SendText,
        close: CloseSocket,
        fetch: FetchRange,
        capacity: int,
        batch: bool = False,
    ) -> None:
        self.item_id = item_id
        self.user_id = user_id
        self.username = username
        self.session_id = session_id
        self._send = send
        self._close = close
        self._fetch = fetch
        self._capacity = capacity
        self._batch = batch
        # Made when needed and dropped when emptied: most sockets are idle most of the
        # time, and an empty deque still takes ~600 bytes.
        self._queue: deque[tuple[int, str] | _Close] | None = None
        self._closing: _Close | None = None
        self._hub: Hub | None = None
        self._started = False
        self._draining = False
        self._gone = False
        self._task: asyncio.Task[None] | None = None
        self._kick_handle: asyncio.Handle | None = None
        # Highest seq sent; frames at or below it are duplicates.
        self.last_seq = 0
        # Messages up to here are read from the store before live frames are sent.
        self.catch_up_to = 0
        # Told when a close is requested (the socket's handler bounds the wait).
        self.on_close: Callable[[], None] | None = None

    @property
    def closing(self) -> _Close | None:
        return self._closing

    def start(self) -> None:
        """Begin sending: the catch-up from the store first, then what was pushed so far."""
        self._started = True
        self._kick()

    def push(self, seq: int, frame: str) -> None:
        """Queue a frame, sent at the end of this event-loop turn; never waits, so never
        blocks the fan-out."""
        if self._closing is not None or self._gone:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._capacity:
            metrics.QUEUE_OVERFLOWS.inc()
            self.request_close(protocol.TRY_AGAIN_LATER, protocol.SLOW_CONSUMER)
            return
        queue.append((seq, frame))
        if self._kick_handle is None and self._started and not self._draining:
            # Sent at the end of this event-loop turn, with every other frame pushed in
            # it: a burst then goes out socket by socket rather than message by message,
            # and the kernel merges each socket's writes into fewer packets.
            self._kick_handle = asyncio.get_running_loop().call_soon(self._kick)

    def request_close(self, code: int, reason: str) -> None:
        """Close after the frame being sent, dropping what is queued."""
        if self._closing is not None:
            return
        self._closing = _Close(code, reason)
        if self._hub is not None:
            self._hub.detach(self)
        self._queue = deque([self._closing])
        if self.on_close is not None:
            self.on_close()
        if self._started and not self._draining:
            self._kick()

    async def wait_sent(self) -> None:
        """Until the frames queued so far (a close included) are sent or given up."""
        if self._task is not None:
            await asyncio.wait([self._task])

    def stop(self) -> None:
        """The socket is gone: send nothing more."""
        self._gone = True
        self._queue = None
        if self._kick_handle is not None:
            self._kick_handle.cancel()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _kick(self) -> None:
        self._kick_handle = None
        if self._draining or self._gone:
            return
        self._draining = True
        self._task = start_eagerly(self._drain(), name="outbox")

    async def _drain(self) -> None:
        try:
            if self.catch_up_to > self.last_seq and self._closing is None:
                await self._fill(self.catch_up_to)
            while not self._gone:
                queue = self._queue  # re-read: a close replaces it
                if not queue:
                    break
                entry = queue.popleft()
                if isinstance(entry, _Close):
                    self._gone = True
                    await self._close(entry.code, entry.reason)
                    return
                seq, frame = entry
                if seq:
                    if seq <= self.last_seq:
                        continue
                    if seq > self.last_seq + 1:
                        await self._fill(seq - 1)
                        if self._closing is not None:
                            continue
                    self.last_seq = seq
                if self._batch and queue:
                    frame = self._batched(frame, queue)
                await self._send(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The socket went away under a send; its reader sees the disconnect.
            log.debug("send failed", exc_info=True)
            self._gone = True
            self._queue = None
        finally:
            self._draining = False
            self._task = None
            if not self._queue:
                self._queue = None

    def _batched(self, first: str, queue: deque[tuple[int, str] | _Close]) -> str:
        """`first` and the frames queued behind it, as one `batch` frame."""
        frames = [first]
        size = _utf8_size(first)
        while queue and len(frames) < BATCH_MAX_FRAMES:
            entry = queue[0]
            if isinstance(entry, _Close):
                break
            seq, frame = entry
            if seq:
                if seq <= self.last_seq:
                    queue.popleft()
                    continue
                if seq > self.last_seq + 1:
                    break  # a gap: filled from the store before the next send
            size += _utf8_size(frame)
            if size > BATCH_MAX_BYTES:
                break
            if seq:
                self.last_seq = seq
            queue.popleft()
            frames.append(frame)
        return _join(frames)

    async def _fill(self, upto: int) -> None:
        # Into the outbox's own task first: the eager first step runs outside any task
        # (or inside the caller's), and waits of the database driver need their own.
        await asyncio.sleep(0)
        while self.last_seq < upto and self._closing is None:
            try:
                page = await self._fetch(
                    self.item_id, self.last_seq, min(upto, self.last_seq + FILL_PAGE)
                )
            except Exception:
                # The socket cannot get what it missed: it resumes with `since` later.
                log.warning("reading missed messages failed", exc_info=True)
                self.request_close(protocol.TRY_AGAIN_LATER, protocol.STORE_UNAVAILABLE)
                return
            if not page:
                # Pruned by retention: there is nothing to send below `upto`.
                self.last_seq = upto
                return
            for seq, frame in _batches(page) if self._batch else page:
                if self._closing is not None:
                    return
                self.last_seq = seq
                await self._send(frame)


def _batches(page: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Consecutive frames of `page` joined into `batch` frames: (last seq, frame) each."""
    joined: list[tuple[int, str]] = []
    frames: list[str] = []
    size = 0
    last = 0
    for seq, frame in page:
        frame_size = _utf8_size(frame)
        if frames and (len(frames) == BATCH_MAX_FRAMES or size + frame_size > BATCH_MAX_BYTES):
            joined.append((last, _join(frames)))
            frames = []
            size = 0
        frames.append(frame)
        size += frame_size
        last = seq
    if frames:
        joined.append((last, _join(frames)))
    return joined


def _utf8_size(frame: str) -> int:
    # orjson writes non-ASCII characters as they are: up to 4 bytes each on the wire.
    return len(frame) if frame.isascii() else len(frame.encode())


def _join(frames: list[str]) -> str:
    return frames[0] if len(frames) == 1 else _BATCH_HEAD + ",".join(frames) + "]}"
