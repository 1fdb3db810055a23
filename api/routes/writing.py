"""What the sockets that take publishes and state changes share (the item channel and
`/ws`): their changes in flight, made on first use, and waiting for them in order."""

from __future__ import annotations

from api.auth.credentials import Principal
from api.realtime.outbox import Outbox
from api.routes.publishes import Publishes
from api.routes.sockets import SocketSession
from api.routes.state_frames import StateFrames
from api.runtime import Runtime


class WritingSession(SocketSession):
    __slots__ = ("_publishes", "_state_frames")

    def __init__(self, runtime: Runtime, principal: Principal, outbox: Outbox) -> None:
        super().__init__(runtime, principal, outbox)
        # Made by the first publish (or state change): most sockets never send one.
        self._publishes: Publishes | None = None
        self._state_frames: StateFrames | None = None

    def _current(self) -> Principal:
        return self.principal

    async def _settle_publishes(self) -> None:
        if self._publishes is not None:
            await self._publishes.settle()
            self._publishes = None

    async def settle(self) -> None:
        """Wait for the changes in flight, so that answers keep the frames' order."""
        await self._settle_publishes()
        if self._state_frames is not None:
            await self._state_frames.settle()
