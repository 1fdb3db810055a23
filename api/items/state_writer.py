"""State changes, stored by group commit (see `api.items.group_commit`).

The process's state store locks the group's items, checks each author's role, applies
the changes with the items' kinds and bumps the versions, in one transaction per group
(`sqlite_state`, `postgres_state`, or `state.apply_many` through SQLAlchemy). Each caller
is answered with its outcome once committed; then the stored versions, in order, go to
the deliveries in one call. A burst on one document costs one transaction and one row
lock instead of one per change; a lone change is not delayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.items.group_commit import CommitStore, GroupCommit
from api.items.state import apply_many
from api.items.state_rules import Change, Outcome, StoredState

MAX_BATCH = 500

# Changes in, one outcome per change out.
StateStore = CommitStore[Change, Outcome]


class StatePublisher(Protocol):
    """Where stored versions go to be delivered (the state hub, in the service)."""

    async def publish_states(self, states: Sequence[StoredState]) -> None:
        """The versions of a stored group, in order, in one go."""


class StateWriter:
    def __init__(self, store: StateStore, publisher: StatePublisher | None, keep: int) -> None:
        self._publisher = publisher
        # At most `keep` per group: every version stored is kept for a while, for
        # deliveries that must read it back.
        self._commit: GroupCommit[Change, Outcome] = GroupCommit(
            store, name="state-writer", max_group=min(MAX_BATCH, keep), after=self._publish
        )

    async def start(self) -> None:
        await self._commit.start()

    async def stop(self) -> None:
        """Apply what is queued, then stop."""
        await self._commit.stop()

    def submit(self, change: Change) -> asyncio.Future[Outcome]:
        """Queue a change; the future resolves to its outcome once stored or refused (a
        `StoredState`, or the refusal / `Forbidden` / `NotFound` as a value), or fails
        with `Unavailable` when the store could not be reached (nothing stored)."""
        return self._commit.submit(change)

    async def _publish(self, outcomes: Sequence[Outcome]) -> None:
        stored = [o for o in outcomes if isinstance(o, StoredState)]
        if stored and self._publisher is not None:
            await self._publisher.publish_states(stored)


class SessionStateStore:
    """Through a pooled SQLAlchemy session per group (see `state.apply_many`)."""

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], max_bytes: int, keep: int
    ) -> None:
        self._session_factory = session_factory
        self._max_bytes = max_bytes
        self._keep = keep

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def store(self, changes: Sequence[Change]) -> list[Outcome]:
        async with self._session_factory() as db:
            return await apply_many(db, changes, self._max_bytes, self._keep)
