"""PostgreSQL: the writer's own asyncpg connection, one statement per group.

The statement checks every author's rights, bumps each item's `last_seq` by its number
of messages and inserts them (pruning beyond a retention), as a single implicit
transaction: one round trip, the commit included. The items' rows are locked in id
order first, so the writers of two processes cannot deadlock; the bump then sees the
latest `last_seq` whichever process stored last, and seqs stay contiguous.

The connection is the writer's own (`api.items.postgres_conn`).
"""

from __future__ import annotations

from collections.abc import Sequence

from api import metrics
from api.items.group_store import Result, refused, stored_at
from api.items.messages import Draft, StoredMessage
from api.items.postgres_conn import PostgresWriter

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


class PostgresGroupStore:
    def __init__(self, dsn: str, retention: int) -> None:
        self._writer = PostgresWriter(dsn)
        self._retention = retention

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()

    async def store(self, drafts: Sequence[Draft]) -> list[Result]:
        ts = stored_at()
        columns: tuple[list[str], ...] = ([], [], [], [])
        for draft in drafts:
            columns[0].append(draft.item_id)
            columns[1].append(draft.user_id)
            columns[2].append(draft.username)
            columns[3].append(draft.data)
        rows = await self._writer.run(
            lambda conn: conn.fetch(_STORE, *columns, ts, self._retention)
        )
        results: list[Result] = []
        for draft, (known, seq) in zip(drafts, rows, strict=True):
            if seq is None:
                results.append(refused(known))
            else:
                results.append(StoredMessage(draft.item_id, seq, draft.username, draft.data, ts))
        metrics.MESSAGES_STORED.inc(sum(isinstance(r, StoredMessage) for r in results))
        return results
