"""The SQLite writer's own connection: its WAL stays small however long the writes go on."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.items import sqlite_conn
from api.items.sqlite_conn import SqliteWriter

ROW = "r" * 200


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE rows (n INTEGER, pad TEXT)")
    writer = SqliteWriter(path)
    await writer.open()
    yield writer
    await writer.close()


async def insert(writer: SqliteWriter, count: int) -> int:
    def work(db: sqlite3.Connection) -> tuple[int, int]:
        db.executemany("INSERT INTO rows VALUES (?, ?)", [(n, ROW) for n in range(count)])
        return count, count

    return await writer.transact(work)


async def test_the_wal_stays_small_under_back_to_back_groups(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    # 20 checkpoints' worth of rows, ~8 MB, groups one after another with no pause.
    for _ in range(20 * sqlite_conn.CHECKPOINT_EVERY // 100):
        await insert(writer, 100)
    wal = (tmp_path / "w.db-wal").stat().st_size
    assert wal < 2 * 1024 * 1024, f"the WAL grew to {wal:,} bytes"
    with sqlite3.connect(tmp_path / "w.db") as db:
        assert db.execute("SELECT count(*) FROM rows").fetchone() == (
            20 * sqlite_conn.CHECKPOINT_EVERY,
        )
