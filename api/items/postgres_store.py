"""PostgreSQL: the writer's own asyncpg connection, one statement per group.

The statement checks every author's rights, bumps each item's `last_seq` by its number
of messages and inserts them (pruning beyond a retention), as a single implicit
transaction: one round trip, the commit included. The items' rows are locked in id
order first, so the writers of two processes cannot deadlock; the bump then sees the
latest `last_seq` whichever process stored last, and seqs stay contiguous.

A lost connection fails the group (its publishers are told `unavailable`, nothing was
acknowledged) and the next group connects again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from api import metrics
from api.items.group_store import Result, refused, stored_at
from api.items.messages import Draft, StoredMessage

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# A group that takes longer has lost its server: fail it rather than hang the writer.
COMMAND_TIMEOUT = 30.0

_STORE = """
WITH d AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        WITH ORDINALITY AS d(item_id, user_id, sender, data, ord)
),
locked AS (
    SELECT id, owner_id FROM items WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
),
rights AS (
    SELECT d.ord, d.item_id, d.sender, d.data,
        COALESCE(l.owner_id = d.user_id OR m.role IS NOT NULL, false) AS known,
        COALESCE(l.owner_id = d.user_id OR m.role IN ('owner', 'writer'), false) AS allowed
    FROM d
    LEFT JOIN locked l ON l.id = d.item_id
    LEFT JOIN memberships m
        ON l.id IS NOT NULL AND m.item_id = d.item_id AND m.user_id = d.user_id
),
counts AS (
    SELECT item_id, count(*)::int AS n FROM rights WHERE allowed GROUP BY item_id
),
bumped AS (
    UPDATE items SET last_seq = items.last_seq + counts.n
    FROM counts WHERE items.id = counts.item_id
    RETURNING items.id, items.last_seq AS last, items.last_seq - counts.n AS base
),
numbered AS (
    SELECT r.ord, r.item_id, r.sender, r.data, b.last,
        (b.base + row_number() OVER (PARTITION BY r.item_id ORDER BY r.ord))::int AS seq
    FROM rights r JOIN bumped b ON b.id = r.item_id
    WHERE r.allowed
),
inserted AS (
    INSERT INTO messages (item_id, seq, sender, data, ts)
    SELECT item_id, seq, sender, data, $5 FROM numbered
    WHERE $6::int = 0 OR seq > last - $6::int
),
pruned AS (
    DELETE FROM messages USING bumped
    WHERE $6::int > 0 AND messages.item_id = bumped.id AND messages.seq <= bumped.last - $6::int
)
SELECT r.known, n.seq FROM rights r LEFT JOIN numbered n ON n.ord = r.ord ORDER BY r.ord
"""


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a libpq-style DSN for asyncpg."""
    _, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep else url


class PostgresGroupStore:
    def __init__(self, dsn: str, retention: int) -> None:
        self._dsn = dsn
        self._retention = retention
        self._conn: Any = None  # asyncpg.Connection

    async def open(self) -> None:
        try:
            await self._connection()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            log.warning("the message store is not reachable yet; retrying at the next publish")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
            )
        return self._conn

    async def store(self, drafts: Sequence[Draft]) -> list[Result]:
        ts = stored_at()
        conn = await self._connection()
        columns: tuple[list[str], ...] = ([], [], [], [])
        for draft in drafts:
            columns[0].append(draft.item_id)
            columns[1].append(draft.user_id)
            columns[2].append(draft.username)
            columns[3].append(draft.data)
        try:
            rows = await conn.fetch(_STORE, *columns, ts, self._retention)
        except asyncpg.PostgresError:
            raise  # the server refused it and rolled it back; the connection is fine
        except BaseException:
            # Lost, timed out or cancelled mid-statement: its state is unknown, start afresh.
            self._conn = None
            conn.terminate()
            raise
        results: list[Result] = []
        for draft, (known, seq) in zip(drafts, rows, strict=True):
            if seq is None:
                results.append(refused(known))
            else:
                results.append(StoredMessage(draft.item_id, seq, draft.username, draft.data, ts))
        metrics.MESSAGES_STORED.inc(sum(isinstance(r, StoredMessage) for r in results))
        return results
