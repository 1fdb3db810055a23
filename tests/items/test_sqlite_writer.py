"""The SQLite writer's own connection: groups on the event loop, checkpoints beside them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.items import sqlite_conn
from api.items.sqlite_conn import SqliteWriter


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE rows (n INTEGER)")
    writer = SqliteWriter(path)
    await writer.open()
    yield writer
    await writer.close()


async def insert(writer: SqliteWriter, count: int) -> int:
    def work(db: sqlite3.Connection) -> tuple[int, int]:
        db.executemany("INSERT INTO rows VALUES (?)", [(n,) for n in range(count)])
        return count, count

    return await writer.transact(work)


async def test_groups_go_on_while_a_checkpoint_runs(
    writer: SqliteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Semaphore(0), threading.Event()
    checkpoint = SqliteWriter._checkpoint

    def slow_checkpoint(self: SqliteWriter) -> None:
        started.release()
        release.wait(30)
        checkpoint(self)

    monkeypatch.setattr(SqliteWriter, "_checkpoint", slow_checkpoint)
    # Due: it starts on the thread; a writer that waited for it would hang here.
    await asyncio.wait_for(insert(writer, sqlite_conn.CHECKPOINT_EVERY), 10)
    assert await asyncio.to_thread(started.acquire, timeout=30)
    # The checkpoint is stuck, and groups are still stored (on the event loop); none
    # of them starts a second checkpoint meanwhile.
    for _ in range(3):
        assert await insert(writer, sqlite_conn.CHECKPOINT_EVERY) == sqlite_conn.CHECKPOINT_EVERY
    assert not started.acquire(blocking=False)
    release.set()


async def test_the_wal_is_checkpointed_every_so_many_rows(
    writer: SqliteWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[tuple[int, int, int]] = []
    finished = threading.Semaphore(0)
    checkpoint = SqliteWriter._checkpoint

    def counted(self: SqliteWriter) -> None:
        checkpoint(self)
        assert self._checkpointer is not None  # its own connection, not the loop's
        done.append(self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        finished.release()

    monkeypatch.setattr(SqliteWriter, "_checkpoint", counted)
    await insert(writer, sqlite_conn.CHECKPOINT_EVERY - 1)
    assert done == []  # not yet due
    await insert(writer, 1)
    assert await asyncio.to_thread(finished.acquire, timeout=30)
    await insert(writer, sqlite_conn.CHECKPOINT_EVERY)
    assert await asyncio.to_thread(finished.acquire, timeout=30)
    assert len(done) == 2
    busy, in_wal, copied = done[-1]
    assert busy == 0 and in_wal == copied  # everything in the WAL is in the database
