"""A socket's `publish` frames: queued on the writer without waiting for each other,
answered once stored, in the order they came."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from api.auth.credentials import Principal
from api.errors import Forbidden, NotFound
from api.items import messages
from api.items.messages import StoredMessage
from api.realtime import protocol
from api.realtime.outbox import Outbox
from api.runtime import Runtime

# Publishes of one socket waiting for their group commit before it stops reading.
MAX_INFLIGHT = 256
NO_ACCESS_DETAIL = "no such item, or no access to it"


class Publishes:
    """The publishes of one socket in flight. On an item socket a publish the store
    finds no access for closes the socket (1008 `forbidden`); on `/ws` (`names_items`)
    it is answered `forbidden`, and every answer names its item."""

    __slots__ = ("_inflight", "_names_items", "_outbox", "_principal", "_runtime")

    def __init__(
        self,
        runtime: Runtime,
        outbox: Outbox,
        principal: Callable[[], Principal],
        names_items: bool = False,
    ) -> None:
        self._runtime = runtime
        self._outbox = outbox
        self._principal = principal
        self._names_items = names_items
        self._inflight: deque[asyncio.Future[StoredMessage]] = deque()

    async def submit(self, item_id: str, data: Any, ref: str | None) -> None:
        inflight = self._inflight
        while inflight and inflight[0].done():
            inflight.popleft()
        if len(inflight) >= MAX_INFLIGHT:
            # Backpressure: stop reading until the oldest publish is stored.
            await asyncio.wait([inflight[0]])
        # Not awaited: the next frames are read while this one waits for its group
        # commit. The writer checks the role in the storing transaction (it may have
        # changed since the handshake); answers go out in the order of the publishes.
        principal = self._principal()
        future = self._runtime.writer.submit(
            item_id, principal.user_id, principal.username, messages.encode_data(data)
        )
        future.add_done_callback(partial(self._stored, item_id, ref))
        inflight.append(future)

    def _stored(self, item_id: str, ref: str | None, future: asyncio.Future[StoredMessage]) -> None:
        if future.cancelled():
            return
        named = item_id if self._names_items else None
        exc = future.exception()
        if exc is None:
            self._outbox.push(0, protocol.ack_frame(ref, future.result().seq, named))
        elif isinstance(exc, Forbidden):
            self._error(protocol.FORBIDDEN, "readers cannot publish", ref, named)
        elif isinstance(exc, NotFound):
            if named is None:
                self._outbox.request_close(protocol.POLICY_VIOLATION, protocol.FORBIDDEN)
            else:
                self._error(protocol.FORBIDDEN, NO_ACCESS_DETAIL, ref, named)
        else:
            detail = "the message was not stored; publish it again"
            self._error(protocol.UNAVAILABLE, detail, ref, named)

    def _error(self, code: str, detail: str, ref: str | None, item_id: str | None) -> None:
        self._outbox.push(0, protocol.error_frame(code, detail, ref, item_id))

    def idle(self) -> bool:
        return not self._inflight

    async def settle(self) -> None:
        """Wait for the publishes in flight, so that answers keep the frames' order."""
        if self._inflight:
            await asyncio.wait(list(self._inflight))
            self._inflight.clear()
