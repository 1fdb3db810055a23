"""PostgreSQL: state changes stored by the state writer's own asyncpg connection.

One transaction per group, two statements in it. The first locks the group's state rows
in item order (so the writers of two processes cannot deadlock, and each waits for the
other's commit) and reads the states, the items' kinds and owners and the authors'
roles; the kinds apply the changes to those states (`state_rules.apply_group`); the
second writes the new versions, the kept history and its pruning. Then the commit:
versions stay contiguous whichever process stores, and the roles checked are those of
the storing transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.items.group_store import stored_at
from api.items.postgres_conn import PostgresWriter
from api.items.state_rules import Applied, Change, Locked, Outcome, apply_group

_LOCK = """
WITH locked AS (
    SELECT item_id, version, state FROM item_states
    WHERE item_id = ANY($1::text[]) ORDER BY item_id FOR UPDATE
)
SELECT l.item_id, i.kind, i.owner_id, l.version, l.state,
    ARRAY(
        SELECT m.user_id || ' ' || m.role FROM memberships m
        WHERE m.item_id = l.item_id AND m.user_id = ANY($2::text[])
    ) AS roles
FROM locked l JOIN items i ON i.id = l.item_id
"""

_WRITE = """
WITH d AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[]) AS d(item_id, version, state)
),
updated AS (
    UPDATE item_states s SET version = d.version, state = d.state
    FROM d WHERE s.item_id = d.item_id
),
pruned AS (
    DELETE FROM state_changes c USING unnest($4::text[], $5::int[]) AS p(item_id, upto)
    WHERE c.item_id = p.item_id AND c.version <= p.upto
)
INSERT INTO state_changes (item_id, version, sender, state, ts)
SELECT h.item_id, h.version, h.sender, h.state, $10::timestamptz
FROM unnest($6::text[], $7::int[], $8::text[], $9::text[]) AS h(item_id, version, sender, state)
"""


class PostgresStateStore:
    def __init__(self, dsn: str, max_bytes: int, keep: int) -> None:
        self._writer = PostgresWriter(dsn)
        self._max_bytes = max_bytes
        self._keep = keep

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()

    async def store(self, changes: Sequence[Change]) -> list[Outcome]:
        ts = stored_at()

        async def work(conn: Any) -> list[Outcome]:
            async with conn.transaction():
                applied = await self._apply(conn, changes)
                if applied.states:
                    await conn.execute(_WRITE, *_columns(applied), ts)
            return applied.outcomes

        return await self._writer.run(work)

    async def _apply(self, conn: Any, changes: Sequence[Change]) -> Applied:
        item_ids = sorted({c.item_id for c in changes})
        user_ids = sorted({c.user_id for c in changes})
        items: dict[str, Locked] = {}
        roles: dict[tuple[str, str], str] = {}
        for item_id, kind, owner_id, version, state, members in await conn.fetch(
            _LOCK, item_ids, user_ids
        ):
            items[item_id] = Locked(kind, owner_id, version, state)
            for member in members:
                user_id, _, role = member.rpartition(" ")
                roles[(item_id, user_id)] = role
        return apply_group(changes, items, roles, self._max_bytes, self._keep)


def _columns(applied: Applied) -> tuple[Any, ...]:
    states = applied.states
    history = applied.history
    return (
        list(states),
        [version for version, _ in states.values()],
        [text for _, text in states.values()],
        list(applied.prune),
        list(applied.prune.values()),
        [h[0] for h in history],
        [h[1] for h in history],
        [h[2] for h in history],
        [h[3] for h in history],
    )
