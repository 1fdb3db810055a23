"""Presence announcements, at most one per user per item per tick.

The first change on a quiet item is announced at once; changes during the next tick are
collected and announced together when it ends, as their net change: a user who came
and went within the tick is not announced at all. A burst of joins and leaves (a
reconnect loop, a crowd arriving) thus costs each listener a bounded number of frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from api.realtime import protocol
from api.realtime.envelope import envelope, item_channel

log = logging.getLogger(__name__)

# How long changes are collected after an announcement (seconds).
PRESENCE_TICK = 0.1

Publish = Callable[[str, bytes], Awaitable[None]]
# user -> (first event of the tick, last event, users online after the last)
_Changes = dict[str, tuple[str, str, int]]


class Announcer:
    def __init__(self, publish: Publish, tick: float = PRESENCE_TICK) -> None:
        self._publish = publish
        self.tick = tick
        # Items announced less than a tick ago, with what changed since.
        self._cooling: dict[str, tuple[asyncio.TimerHandle, _Changes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def changed(self, item_id: str, event: str, username: str, count: int) -> None:
        """A user came online (`join`) or went offline (`leave`); `count` users are now."""
        cooling = self._cooling.get(item_id)
        if cooling is None:
            self._cool(item_id)
            await self._announce(item_id, {username: (event, event, count)})
            return
        changes = cooling[1]
        first = changes[username][0] if username in changes else event
        changes[username] = (first, event, count)

    def _cool(self, item_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._cooling[item_id] = (loop.call_later(self.tick, self._due, item_id), {})

    def _due(self, item_id: str) -> None:
        _, changes = self._cooling.pop(item_id)
        if not changes:
            return
        self._cool(item_id)  # this announcement starts a tick of its own
        task = asyncio.create_task(self._announce(item_id, changes), name="presence")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, item_id: str, changes: _Changes) -> None:
        for username, (first, last, count) in changes.items():
            if first != last:
                continue  # joined and left (or left and came back) within the tick
            frame = protocol.encode(
                protocol.PresenceFrame(
                    event="join" if last == "join" else "leave", user=username, count=count
                )
            )
            try:
                await self._publish(item_channel(item_id), envelope(0, frame))
            except Exception:  # best effort, like presence itself
                log.warning("presence announcement failed", exc_info=True)

    async def stop(self) -> None:
        for timer, _ in self._cooling.values():
            timer.cancel()
        self._cooling.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
