"""SQLite: messages stored by the writer's own connection (`api.items.sqlite_conn`).

A whole group — rights, `last_seq` bumps, inserts, pruning — is one transaction, run on
the event loop when the write lock is free (see `sqlite_conn` for why, and for what a
commit survives).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import cast

from api import metrics
from api.items.group_store import Result, refused, stored_at
from api.items.messages import Draft, StoredMessage
from api.items.sqlite_conn import SqliteWriter

_RIGHTS = (
    "SELECT items.owner_id, memberships.role FROM items LEFT JOIN memberships"
    " ON memberships.item_id = items.id AND memberships.user_id = ? WHERE items.id = ?"
)
_BUMP = "UPDATE items SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq"
_INSERT = "INSERT INTO messages (item_id, seq, sender, data, ts) VALUES (?, ?, ?, ?, ?)"
_PRUNE = "DELETE FROM messages WHERE item_id = ? AND seq <= ?"


def sqlite_ts(ts: datetime) -> str:
    """`ts` (aware UTC) as SQLAlchemy's SQLite DATETIME stores it, so history reads it."""
    return ts.isoformat(" ", "microseconds")[:26]  # without the offset


class SqliteGroupStore:
    def __init__(self, path: str, retention: int, synchronous: str = "NORMAL") -> None:
        self._writer = SqliteWriter(path, synchronous, "sqlite-messages")
        self._retention = retention

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()

    async def store(self, drafts: Sequence[Draft]) -> list[Result]:
        ts = stored_at()
        results = await self._writer.transact(partial(self._numbered, drafts=drafts, ts=ts))
        metrics.MESSAGES_STORED.inc(sum(isinstance(r, StoredMessage) for r in results))
        return results

    def _numbered(
        self, db: sqlite3.Connection, *, drafts: Sequence[Draft], ts: datetime
    ) -> tuple[list[Result], int]:
        """The group's results and the rows written."""
        rights: dict[tuple[str, str], bool | None] = {}
        by_item: dict[str, list[int]] = {}
        # A refused draft's error now, a stored one's message below: no exception is
        # built for a draft that is stored.
        results: list[Result | None] = []
        for index, draft in enumerate(drafts):
            key = (draft.item_id, draft.user_id)
            if key not in rights:
                row = db.execute(_RIGHTS, (draft.user_id, draft.item_id)).fetchone()
                rights[key] = _may_publish(row, draft.user_id)
            right = rights[key]
            if right:
                results.append(None)
                by_item.setdefault(draft.item_id, []).append(index)
            else:
                results.append(refused(right is not None))
        rows: list[tuple[str, int, str, str, str]] = []
        stamp = sqlite_ts(ts)
        for item_id, indexes in by_item.items():
            (last,) = db.execute(_BUMP, (len(indexes), item_id)).fetchone()
            for seq, index in enumerate(indexes, start=last - len(indexes) + 1):
                draft = drafts[index]
                results[index] = StoredMessage(item_id, seq, draft.username, draft.data, ts)
                rows.append((item_id, seq, draft.username, draft.data, stamp))
        if rows:
            db.executemany(_INSERT, rows)
        if self._retention:
            for item_id, indexes in by_item.items():
                last_seq = results[indexes[-1]].seq  # type: ignore[union-attr]
                db.execute(_PRUNE, (item_id, last_seq - self._retention))
        return cast(list[Result], results), len(rows)


def _may_publish(row: tuple[str, str | None] | None, user_id: str) -> bool | None:
    """True / False (a reader) / None (no such item, or not a member)."""
    if row is None:
        return None
    owner_id, role = row
    if owner_id == user_id:
        return True
    if role is None:
        return None
    return role in ("owner", "writer")
