"""One item channel (`/items/{id}/ws`) that survives drops: reconnect, resume, dedupe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from api.client import frames
from api.client.errors import NotRecovered, ProtocolError, StateError
from api.client.refresh import Tokens
from api.client.retry import Backoff
from api.client.sockets import MAX_BUFFERED, ReconnectingSocket
from api.client.types import Message

log = logging.getLogger("api.client")


class Channel(ReconnectingSocket):
    """Messages of one item, each exactly once and in seq order, across reconnects.

    Use as `async with client.channel(item_id, since=N) as channel:`; entering waits for
    the first `ready` (retrying while the server is unreachable) and raises
    `ChannelRefused` if the server refuses. Iterate with `async for message in channel`
    — several loops one after another continue where the previous one stopped. A drop or
    a 1001/1011/1012/1013 close reconnects with backoff and `since=<last seq received>`;
    a 1008 close raises `ChannelRefused` from the iterator (and from `publish`), except
    `token expired` when the client can renew its token. Messages are buffered until read,
    up to `max_buffered`: beyond, the channel takes no more, closes its socket once the
    publishes sent on it are acknowledged, and resumes once half of the messages are read
    (publishes wait for the new socket meanwhile).

    With `state=True` the socket opts in to the item's state (`?state=1`): `item_state`
    holds the latest `state` frame and `on_state` is called with each (the snapshot after
    every (re)connect, without `sender`, then every change in version order, none twice);
    `patch()` / `action()` change it over the socket.
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
        state: bool = False,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        max_buffered: int | None = MAX_BUFFERED,
    ) -> None:
        if since is not None and (isinstance(since, bool) or since < 0):
            raise ValueError("since must be a non-negative integer")
        super().__init__(
            url, tokens, backoff=backoff, timeout=publish_timeout, max_buffered=max_buffered
        )
        self._on_presence = on_presence
        self._on_state = on_state
        self._wants_state = state
        self._last_seq = since
        self._jump = False  # after `recovered: false`, the next seq may skip ahead
        #: The latest `presence` frame, or None before the first.
        self.presence: dict[str, Any] | None = None
        #: The `ready` frame of the current (or last) connection.
        self.ready: dict[str, Any] | None = None
        #: The latest `state` frame (`state=True`), or None before the first.
        self.item_state: dict[str, Any] | None = None

    @property
    def last_seq(self) -> int | None:
        """The seq of the last message received (queued for iteration)."""
        return self._last_seq

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Message:
        entry = await self._next()
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

    async def patch(self, ops: list[dict[str, Any]], timeout: float | None = None) -> int:  # noqa: ASYNC109
        """JSON Patch a `document` item's state over the socket; the acked version.
        Raises `StateError` (`conflict`, `bad_request`, `forbidden`, `too_large`, ...)."""
        self._check_entered()
        return await self._publisher.request({"type": "patch", "ops": ops}, timeout, StateError)

    async def action(self, action: dict[str, Any], timeout: float | None = None) -> int:  # noqa: ASYNC109
        """A move in a game item (`{"move": 4}`); the acked version. An illegal one raises
        `StateError` with code `illegal` and the rule as its detail."""
        self._check_entered()
        frame = {"type": "action", "action": action}
        return await self._publisher.request(frame, timeout, StateError)

    # The socket's frames.

    def _query(self) -> str:
        # Batches: several frames in one when many wait (a replay, a burst), unpacked here.
        query = "batch=1" if self._last_seq is None else f"batch=1&since={self._last_seq}"
        return f"{query}&state=1" if self._wants_state else query

    def _on_ready(self, frame: dict[str, Any]) -> None:
        if frame["type"] != "ready":
            raise ProtocolError(f"expected a 'ready' frame first, got {frame['type']!r}")
        last_seq = frames.field(frame, "last_seq", int)
        self.ready = frame
        recovered = frame.get("recovered")
        if recovered is False and self._last_seq is not None:
            self._put(NotRecovered(self._last_seq, last_seq))
            if self._last_seq > last_seq:
                self._last_seq = last_seq  # the server has fewer messages than we saw
            else:
                self._jump = True  # replay starts at the oldest kept message
        elif self._last_seq is None:
            self._last_seq = last_seq
        self._ready_now()

    async def _on_frame(self, frame: dict[str, Any]) -> bool:
        """Handle one frame; False when a message is missing before this one."""
        kind = frame["type"]
        if kind == "message":
            if self._resume_later:
                return True  # resumed from `last_seq` on the next socket
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
            self._put(message)
        elif kind == "ack":
            self._publisher.acks.acked(frame.get("ref"), frames.ack_value(frame))
        elif kind == "error":
            code = frames.field(frame, "code", str)
            detail = str(frame.get("detail", ""))
            if not self._publisher.acks.refused(frame.get("ref"), code, detail):
                log.warning("channel error frame: %s: %s", code, detail)
        elif kind == "presence":
            self.presence = frame
            if self._on_presence is not None:
                self._on_presence(frame)
        elif kind == "state":
            if frames.newer_state(frame, self.item_state):
                self.item_state = frame
                if self._on_state is not None:
                    self._on_state(frame)
        elif kind == "ready":
            raise ProtocolError("a second 'ready' frame on one socket")
        # pong, and frame types added later: nothing to do.
        return True
