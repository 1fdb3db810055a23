"""Group commits of state changes: every change waiting goes in one transaction.

Changes from every socket and REST call of a process queue here; one task hands what
is queued to `state.apply_many` (locks, rights, kinds, versions, one commit), then
answers each caller with its outcome and hands the stored versions, in order, to
`on_stored` (which publishes them for delivery). A burst on one document costs one
transaction and one row lock instead of one per change; a lone change is not delayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.items.state import Change, Outcome, StoredState, apply_many

log = logging.getLogger(__name__)
MAX_BATCH = 500

OnStored = Callable[[StoredState], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    change: Change
    future: asyncio.Future[Outcome] = field(repr=False)


class StateWriter:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        max_bytes: int,
        keep: int,
        on_stored: OnStored | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._max_bytes = max_bytes
        self._keep = keep
        self.on_stored = on_stored
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="state-writer")

    async def stop(self) -> None:
        """Apply what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 30)
            except TimeoutError:
                log.error("state writer did not drain in time")

    def submit(self, change: Change) -> asyncio.Future[Outcome]:
        """Queue a change; the future resolves to its outcome once stored or refused (a
        `StoredState`, or the refusal / `Forbidden` / `NotFound` as a value), or fails
        when the store does."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(change, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while not (self._stopping and not self._queue):
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                # At most `keep` per group: every version stored is kept for a while, for
                # deliveries that must read it back.
                size = min(MAX_BATCH, self._keep, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                try:
                    async with self._session_factory() as db:
                        outcomes = await apply_many(
                            db, [p.change for p in batch], self._max_bytes, self._keep
                        )
                except Exception as exc:
                    log.exception("applying a batch of %d state changes failed", len(batch))
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    continue
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(outcome)
                if self.on_stored is None:
                    continue
                for outcome in outcomes:
                    if isinstance(outcome, StoredState):
                        try:
                            await self.on_stored(outcome)
                        except Exception:
                            # Stored: deliveries fill the gap from the store.
                            log.warning("publishing a state change failed", exc_info=True)
