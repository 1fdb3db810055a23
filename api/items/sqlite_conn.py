"""SQLite: a writer's own connection, driven by the stdlib driver on a thread of its own.

A whole group — rights, numbering, inserts, commit — runs in one call (`transact`): one
hop from the event loop to that thread and back per group, instead of one per statement
through aiosqlite and SQLAlchemy. Better still, with `synchronous=NORMAL` a commit in
WAL mode writes to the OS's cache and syncs nothing: the group then runs right on the
event loop (tens of microseconds, cheaper than the hop), unless another connection holds
the write lock (the group then waits for it on the thread). Checkpoints, which do sync,
run on the thread too. The statements' texts are fixed, so the driver's statement cache
prepares each once for the connection's life.

Durability: WAL with `synchronous=NORMAL` (the default) makes a commit survive a crash
of the process — an acknowledged change is never lost to a kill -9 — but not a power
cut or an OS crash, which may lose the last commits. `SQLITE_SYNCHRONOUS=FULL` syncs the
WAL on every commit and survives those too, at the cost of one fsync per group.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

SYNCHRONOUS = ("NORMAL", "FULL")
# Another connection (the app's pool, a migration) may hold the write lock a while.
BUSY_TIMEOUT_MS = 30_000
# Rows written between two checkpoints of the WAL (SQLite's own default is ~1000 pages).
CHECKPOINT_EVERY = 2000

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], tuple[T, int]]


class SqliteWriter:
    """One connection, used by one group-commit loop (one group at a time)."""

    def __init__(self, path: str, synchronous: str = "NORMAL", name: str = "sqlite-writer") -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"SQLITE_SYNCHRONOUS must be one of {', '.join(SYNCHRONOUS)}")
        self._path = path
        self._synchronous = synchronous.upper()
        # One thread owns the connection: sqlite3 connections are not shared across threads.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
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

    async def transact(self, work: Work[T]) -> T:
        """`work(db)` in one IMMEDIATE transaction, committed; its result. `work` returns
        (result, rows written) and raises to roll back (nothing stored)."""
        # Only one loop calls this, one group at a time: the connection is never used by
        # the loop and the thread at once.
        loop = asyncio.get_running_loop()
        try:
            if not self._inline:
                raise _Busy
            result, written = self._transact(work, wait=False)
        except _Busy:
            result, written = await loop.run_in_executor(self._thread, self._transact, work, True)
        self._since_checkpoint += written
        if self._inline and self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            # Awaited: with no commit while it runs, it copies the whole WAL, and the next
            # commit starts the WAL over. One running beside the commits never catches up,
            # and the WAL then grows with everything written.
            await loop.run_in_executor(self._thread, self._checkpoint)
        return result

    # On the writer's thread (or, `wait` false, on the loop).

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

    def _transact(self, work: Work[T], wait: bool) -> tuple[T, int]:
        """On the loop (`wait` false: `_Busy` if the write lock is taken) or the thread."""
        db = self._connection()
        timeout = BUSY_TIMEOUT_MS if wait else 0
        if self._busy_timeout != timeout:
            db.execute(f"PRAGMA busy_timeout={timeout}")
            self._busy_timeout = timeout
        try:
            # IMMEDIATE: the write lock now, so what the work reads cannot race a writer.
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                raise _Busy from exc
            raise
        try:
            done = work(db)
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
        return done


class _Busy(Exception):
    """Another connection holds the write lock: wait for it on the thread, not the loop."""
