"""SQLite: state changes stored by the state writer's own connection (`sqlite_conn`).

One IMMEDIATE transaction per group holds the database's write lock from its first
statement: the states and roles read in it are the latest, whichever process wrote
last, and no other writer can interleave before the commit. The kinds apply the
changes to those states (`state_rules.apply_group`); the new versions, the kept history
and its pruning are written before the commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial

from api.items.group_store import stored_at
from api.items.sqlite_conn import SqliteWriter
from api.items.sqlite_store import sqlite_ts
from api.items.state_rules import Change, Locked, Outcome, apply_group

_ITEM = (
    "SELECT items.kind, items.owner_id, item_states.version, item_states.state FROM items"
    " JOIN item_states ON item_states.item_id = items.id WHERE items.id = ?"
)
_ROLE = "SELECT role FROM memberships WHERE item_id = ? AND user_id = ?"
_SET = "UPDATE item_states SET version = ?, state = ? WHERE item_id = ?"
_PRUNE = "DELETE FROM state_changes WHERE item_id = ? AND version <= ?"
_KEEP = "INSERT INTO state_changes (item_id, version, sender, state, ts) VALUES (?, ?, ?, ?, ?)"


class SqliteStateStore:
    def __init__(self, path: str, max_bytes: int, keep: int, synchronous: str = "NORMAL") -> None:
        self._writer = SqliteWriter(path, synchronous, "sqlite-states")
        self._max_bytes = max_bytes
        self._keep = keep

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()

    async def store(self, changes: Sequence[Change]) -> list[Outcome]:
        return await self._writer.transact(partial(self._apply, changes=changes))

    def _apply(
        self, db: sqlite3.Connection, *, changes: Sequence[Change]
    ) -> tuple[list[Outcome], int]:
        items: dict[str, Locked | None] = {}
        roles: dict[tuple[str, str], str] = {}
        for change in changes:
            item_id = change.item_id
            if item_id not in items:
                row = db.execute(_ITEM, (item_id,)).fetchone()
                items[item_id] = None if row is None else Locked(*row)
            locked = items[item_id]
            key = (item_id, change.user_id)
            if locked is None or locked.owner_id == change.user_id or key in roles:
                continue
            role = db.execute(_ROLE, key).fetchone()
            roles[key] = "" if role is None else role[0]  # "": not a member
        found = {item_id: row for item_id, row in items.items() if row is not None}
        known = {key: role for key, role in roles.items() if role}
        applied = apply_group(changes, found, known, self._max_bytes, self._keep)
        for item_id, (version, text) in applied.states.items():
            db.execute(_SET, (version, text, item_id))
        for item_id, upto in applied.prune.items():
            db.execute(_PRUNE, (item_id, upto))
        if applied.history:
            stamp = sqlite_ts(stored_at())
            db.executemany(_KEEP, [(*row, stamp) for row in applied.history])
        return applied.outcomes, len(applied.history) + len(applied.states)
