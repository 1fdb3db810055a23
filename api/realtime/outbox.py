"""One socket's outbound side: a bounded queue, sent in order, without a task when idle."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from api import metrics
from api.realtime import protocol
from api.realtime.batching import BATCH_MAX_FRAMES, pack
from api.realtime.eager import Spawn, start_eagerly
from api.realtime.store import FILL_PAGE, FetchRange

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
# The seq of a queued catch-up: where it stands, the cursor's missed messages are sent.
CATCH_UP = -1


class Cursor(Protocol):
    """Where one item's stream stands on a socket: the outbox itself on an item socket,
    each subscription on a multiplexed one. Messages at or below `last_seq` are
    duplicates; those up to `catch_up_to` are read from the store first."""

    item_id: str
    last_seq: int
    catch_up_to: int


Entry = tuple[Cursor, int, str]


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Outbox:
    """Frames for one socket, sent in order: the first frame (`ready`), the socket's
    catch-up from the store, then the live stream the hub hands it in `seq` order (the
    part of it the catch-up already sent is dropped), so every socket gets every
    message once.

    Frames pushed onto an idle outbox are sent by a callback at the end of the event-loop
    turn, without a task; only a send that must wait (the socket's buffer is full)
    leaves a task behind to finish the queue.

    Overflow policy: when `capacity` frames are waiting, the socket is closed with 1013
    `slow consumer` at once (its owner is told through `on_close` and detaches it, so
    nothing more is queued) and its queue is dropped; the client reconnects with `since`
    and loses nothing.

    Batched (opt-in): the frames queued while a send waits go out as `batch` frames.

    Multiplexed (`/ws`): the outbox is on no item, and each subscription is a `Cursor`
    of its own, pushing its frames here with itself; its catch-up is queued as an entry
    (`catch_up`), so that it goes out after the `subscribed` frame and before the
    subscription's live frames, while the socket's other items wait behind it.
    """

    __slots__ = (
        "_batch",
        "_capacity",
        "_close",
        "_closing",
        "_draining",
        "_fetch",
        "_first",
        "_gone",
        "_kick_handle",
        "_queue",
        "_send",
        "_spawn",
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
        spawn: Spawn | None = None,
    ) -> None:
        self.item_id = item_id  # "" for a socket on no item (the monitor)
        self.user_id = user_id
        self.username = username
        self.session_id = session_id
        self._send = send
        self._close = close
        self._fetch = fetch
        self._capacity = capacity
        self._batch = batch
        self._spawn = spawn
        # Made when needed and dropped when emptied: most sockets are idle most of the
        # time, and an empty deque still takes ~600 bytes.
        self._queue: deque[Entry | _Close] | None = None
        self._closing: _Close | None = None
        self._first: tuple[str, ...] = ()
        self._started = False
        self._draining = False
        self._gone = False
        self._task: asyncio.Task[None] | None = None
        self._kick_handle: asyncio.Handle | None = None
        # Highest seq sent; frames at or below it are duplicates.
        self.last_seq = 0
        # Messages up to here are read from the store before live frames are sent.
        self.catch_up_to = 0
        # Told once, when a close is requested (by anyone, the overflow policy included).
        self.on_close: Callable[[Outbox], None] | None = None

    @property
    def closing(self) -> _Close | None:
        return self._closing

    def start(self, first: tuple[str, ...] = ()) -> None:
        """Begin sending: `first` (`ready`, and a state snapshot on sockets that asked for
        one), the catch-up from the store, then what was pushed."""
        self._first = first
        self._started = True
        self._kick()

    def push(self, seq: int, frame: str, cursor: Cursor | None = None) -> None:
        """Queue a frame, sent at the end of this event-loop turn; never waits, so never
        blocks the fan-out. A message (`seq`) is a duplicate at or below its cursor's
        `last_seq` (the outbox's own, unless a subscription's is given)."""
        if self._closing is not None or self._gone:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._capacity:
            metrics.QUEUE_OVERFLOWS.inc()
            self.request_close(protocol.TRY_AGAIN_LATER, protocol.SLOW_CONSUMER)
            return
        queue.append((self if cursor is None else cursor, seq, frame))
        if self._kick_handle is None and self._started and not self._draining:
            # Sent at the end of this event-loop turn, with every other frame pushed in
            # it: a burst then goes out socket by socket rather than message by message,
            # and the kernel merges each socket's writes into fewer packets.
            self._kick_handle = asyncio.get_running_loop().call_soon(self._kick)

    def catch_up(self, cursor: Cursor) -> None:
        """Queue the messages of `cursor`'s item after its `last_seq`, up to its
        `catch_up_to`, read from the store when the queue reaches them."""
        self.push(CATCH_UP, "", cursor)

    def request_close(self, code: int, reason: str) -> None:
        """Close after the frame being sent, dropping what is queued."""
        if self._closing is not None or self._gone:
            return
        self._closing = _Close(code, reason)
        self._queue = deque([self._closing])
        if self.on_close is not None:
            self.on_close(self)
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
        self._task = start_eagerly(self._drain(), "outbox", self._spawn)

    @staticmethod
    def _fresh(entry: Entry) -> str | None:
        """The frame of a queued entry, None for a message the socket already has."""
        cursor, seq, frame = entry
        if seq:
            if seq <= cursor.last_seq:
                return None
            cursor.last_seq = seq
        return frame

    async def _drain(self) -> None:
        try:
            first, self._first = self._first, ()
            for opening in first:
                if self._closing is not None:
                    break
                await self._send(opening)
            if self.catch_up_to > self.last_seq and self._closing is None:
                await self._catch_up(self)
            while not self._gone:
                queue = self._queue  # re-read: a close replaces it
                if not queue:
                    break
                entry = queue.popleft()
                if isinstance(entry, _Close):
                    self._gone = True
                    await self._close(entry.code, entry.reason)
                    return
                if entry[1] == CATCH_UP:
                    await self._catch_up(entry[0])
                    continue
                frame = self._fresh(entry)
                if frame is None:
                    continue
                if not self._batch or not queue:
                    await self._send(frame)
                    continue
                frames = [frame]
                while queue and len(frames) < BATCH_MAX_FRAMES:
                    head = queue[0]
                    if isinstance(head, _Close) or head[1] == CATCH_UP:
                        break
                    queue.popleft()
                    fresh = self._fresh(head)
                    if fresh is not None:
                        frames.append(fresh)
                for joined in pack(frames):
                    if self._closing is not None:
                        break
                    await self._send(joined)
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

    async def _catch_up(self, cursor: Cursor) -> None:
        """What the socket missed of `cursor`'s item, read from the store page by page."""
        # Into the outbox's own task first: the eager first step runs outside any task
        # (or inside the caller's), and waits of the database driver need their own.
        await asyncio.sleep(0)
        # Re-read at each page: a subscription that ends meanwhile sets it to 0.
        while cursor.last_seq < cursor.catch_up_to and self._closing is None:
            upto = cursor.catch_up_to
            try:
                page = await self._fetch(
                    cursor.item_id, cursor.last_seq, min(upto, cursor.last_seq + FILL_PAGE)
                )
            except Exception:
                # The socket cannot get what it missed: it resumes with `since` later.
                log.warning("reading missed messages failed", exc_info=True)
                self.request_close(protocol.TRY_AGAIN_LATER, protocol.STORE_UNAVAILABLE)
                return
            if not page:
                # Pruned by retention: there is nothing to send below `upto`.
                cursor.last_seq = upto
                return
            cursor.last_seq = page[-1][0]
            frames = [frame for _, frame in page]
            for frame in pack(frames) if self._batch else frames:
                if self.closing is not None:  # requested during the previous send
                    return
                await self._send(frame)
