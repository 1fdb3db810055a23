"""SQLite: the writer's own connection, driven by the stdlib driver on a thread of its own.

A whole group — rights, `last_seq` bumps, inserts, commit — runs in one call: one hop
from the event loop to that thread and back per group, instead of one per statement
through aiosqlite and SQLAlchemy. Better still, with `synchronous=NORMAL` a commit in
WAL mode writes to the OS's cache and syncs nothing: the group then runs right on the
event loop (tens of microseconds, cheaper than the hop), unless another connection holds
the write lock (the group then waits for it on the thread). Checkpoints, which do sync,
run on the thread too. The statements' texts are fixed, so the driver's statement cache
prepares each once for the connection's life.

Durability: WAL with `synchronous=NORMAL` (the default) makes a commit survive a crash
of the process — an acknowledged message is never lost to a kill -9 — but not a power
cut or an OS crash, which may lose the last commits. `SQLITE_SYNCHRONOUS=FULL` syncs the
WAL on every commit and survives those too, at the cost of one fsync per group.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from api import metrics
from api.items.group_store import Result, refused, stored_at
from api.items.messages import Draft, StoredMessage

SYNCHRONOUS = ("NORMAL", "FULL")
# Another connection (the app's pool, a migration) may hold the write lock a while.
BUSY_TIMEOUT_MS = 30_000
# Messages stored between two checkpoints of the WAL (SQLite's own default is ~1000 pages).
CHECKPOINT_EVERY = 2000

_RIGHTS = (
    "SELECT items.owner_id, memberships.role FROM items LEFT JOIN memberships"
    " ON memberships.item_id = items.id AND memberships.user_id = ? WHERE items.id = ?"
)
_BUMP = "UPDATE items SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq"
_INSERT = "INSERT INTO messages (item_id, seq, sender, data, ts) VALUES (?, ?, ?, ?, ?)"
_PRUNE = "DELETE FROM messages WHERE item_id = ? AND seq <= ?"


def sqlite_ts(ts: datetime) -> str:
    """`ts` (aware UTC) as SQLAlchemy's SQLite DATETIME stores it, so history reads it."""
    return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond:06d}"


class SqliteGroupStore:
    def __init__(self, path: str, retention: int, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"SQLITE_SYNCHRONOUS must be one of {', '.join(SYNCHRONOUS)}")
        self._path = path
        self._retention = retention
        self._synchronous = synchronous.upper()
        # One thread owns the connection: sqlite3 connections are not shared across threads.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._db: sqlite3.Connection | None = None
        # Groups run on the event loop when a commit syncs nothing (see above).
        self._inline = self._synchronous == "NORMAL"
        self._since_checkpoint = 0
        self._busy_timeout = BUSY_TIMEOUT_MS

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._connection)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=True)

    async def store(self, drafts: Sequence[Draft]) -> list[Result]:
        # Only the writer calls this, one group at a time: the connection is never used
        # by the loop and the thread at once.
        loop = asyncio.get_running_loop()
        ts = stored_at()
        try:
            if not self._inline:
                raise _Busy
            results = self._store(drafts, ts, wait=False)
        except _Busy:
            results = await loop.run_in_executor(self._thread, self._store, drafts, ts, True)
        stored = sum(isinstance(r, StoredMessage) for r in results)
        metrics.MESSAGES_STORED.inc(stored)
        self._since_checkpoint += stored
        if self._inline and self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            await loop.run_in_executor(self._thread, self._checkpoint)
        return results

    # On the store's thread.

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            # Autocommit mode: transactions are begun and ended explicitly below.
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            if self._inline:
                # Not at a commit on the event loop: `_checkpoint`, on the thread.
                db.execute("PRAGMA wal_autocheckpoint=0")
            self._db = db
            self._busy_timeout = BUSY_TIMEOUT_MS
        return self._db

    def _checkpoint(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # PASSIVE: never waits; next time then
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _store(self, drafts: Sequence[Draft], ts: datetime, wait: bool) -> list[Result]:
        """On the loop (`wait` false: `_Busy` if the write lock is taken) or the thread."""
        db = self._connection()
        timeout = BUSY_TIMEOUT_MS if wait else 0
        if self._busy_timeout != timeout:
            db.execute(f"PRAGMA busy_timeout={timeout}")
            self._busy_timeout = timeout
        try:
            # IMMEDIATE: the write lock now, so reading the rights cannot race a writer.
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise _Busy from exc
            raise
        try:
            results = self._numbered(db, drafts, ts)
            db.execute("COMMIT")
        except BaseException:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                # The connection is unusable: the next group opens a fresh one.
                with contextlib.suppress(sqlite3.Error):
                    db.close()
                self._db = None
            raise
        return results

    def _numbered(
        self, db: sqlite3.Connection, drafts: Sequence[Draft], ts: datetime
    ) -> list[Result]:
        rights: dict[tuple[str, str], bool | None] = {}
        by_item: dict[str, list[int]] = {}
        results: list[Result] = []
        for index, draft in enumerate(drafts):
            key = (draft.item_id, draft.user_id)
            if key not in rights:
                row = db.execute(_RIGHTS, (draft.user_id, draft.item_id)).fetchone()
                rights[key] = _may_publish(row, draft.user_id)
            right = rights[key]
            results.append(refused(right is not None))
            if right:
                by_item.setdefault(draft.item_id, []).append(index)
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
        return results


class _Busy(Exception):
    """Another connection holds the write lock: wait for it on the thread, not the loop."""


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
