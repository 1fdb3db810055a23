"""Item state through SQLAlchemy: read it, its recent versions, and apply changes.

The service's writers store changes through their own connections (`sqlite_state`,
`postgres_state`); `apply_many` is the path for a database only SQLAlchemy's pool can
reach (an in-memory SQLite one). Every store follows the same steps in one transaction:
lock the items' state rows (a row lock on PostgreSQL, the write lock on SQLite), read
the states and the authors' roles, apply the changes with the items' kinds
(`state_rules.apply_group`), bump the versions and commit: concurrent changes from any
number of workers apply one after another, versions 1, 2, 3... with no gap. A refused
change writes nothing and keeps the version.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import kinds
from api.errors import NotFound
from api.items.group_store import stored_at
from api.items.state_rules import (
    Change,
    Locked,
    Outcome,
    StoredState,
    TooLarge,
    apply_group,
    encode_state,
    state_frame,
)
from api.models import Item, ItemState, Membership, StateChange

__all__ = [
    "Change",
    "Outcome",
    "StoredState",
    "TooLarge",
    "apply_many",
    "changes_between",
    "encode_state",
    "initial_state",
    "latest_versions",
    "read_state",
    "state_frame",
]

_items = Item.__table__
_members = Membership.__table__
_states = cast(Table, ItemState.__table__)
_changes = cast(Table, StateChange.__table__)


def initial_state(kind: str, owner: str) -> str:
    return encode_state(kinds.get_kind(kind).initial(owner))


async def read_state(db: AsyncSession, item_id: str) -> StoredState:
    row = (
        await db.execute(
            select(_items.c.kind, _states.c.version, _states.c.state)
            .join(_states, _states.c.item_id == _items.c.id)
            .where(_items.c.id == item_id)
        )
    ).first()
    if row is None:
        raise NotFound("item not found")
    kind, version, state = row
    return StoredState(item_id, kind, version, state)


async def apply_many(
    db: AsyncSession, changes: Sequence[Change], max_bytes: int, keep: int
) -> list[Outcome]:
    """Apply changes in one transaction, in order; one outcome per change.

    Items are locked in a fixed order, so two workers cannot deadlock. `keep` versions
    of each item stay in `state_changes` for deliveries that missed some.
    """
    items: dict[str, Locked] = {}
    for item_id in sorted({c.item_id for c in changes}):
        row = await _lock(db, item_id)
        if row is not None:
            items[item_id] = row
    users = {c.user_id for c in changes if c.item_id in items}
    roles: dict[tuple[str, str], str] = {}
    if users:
        rows = await db.execute(
            select(_members.c.item_id, _members.c.user_id, _members.c.role).where(
                _members.c.item_id.in_(list(items)), _members.c.user_id.in_(users)
            )
        )
        roles = {(item_id, user_id): str(role) for item_id, user_id, role in rows}
    applied = apply_group(changes, items, roles, max_bytes, keep)
    for item_id, (version, text) in applied.states.items():
        await db.execute(
            update(_states).where(_states.c.item_id == item_id).values(version=version, state=text)
        )
    for item_id, upto in applied.prune.items():
        await db.execute(
            delete(_changes).where(_changes.c.item_id == item_id, _changes.c.version <= upto)
        )
    if applied.history:
        ts = stored_at()
        rows_in = [
            {"item_id": i, "version": v, "sender": s, "state": t, "ts": ts}
            for i, v, s, t in applied.history
        ]
        await db.execute(insert(_changes), rows_in)
    await db.commit()
    return applied.outcomes


async def _lock(db: AsyncSession, item_id: str) -> Locked | None:
    """Lock the item's state row for this transaction; its kind, owner, version, state."""
    if db.get_bind().dialect.name == "sqlite":
        # SQLite starts the transaction at the first write: a write that changes nothing
        # takes the database's write lock, so the read below is of the latest state.
        await db.execute(
            update(_states).where(_states.c.item_id == item_id).values(version=_states.c.version)
        )
        locking = False
    else:
        locking = True
    query = (
        select(_items.c.kind, _items.c.owner_id, _states.c.version, _states.c.state)
        .join(_states, _states.c.item_id == _items.c.id)
        .where(_items.c.id == item_id)
    )
    if locking:
        query = query.with_for_update(of=_states)
    row = (await db.execute(query)).first()
    return None if row is None else Locked(row[0], row[1], row[2], row[3])


async def changes_between(
    db: AsyncSession, item_id: str, after: int, upto: int
) -> list[tuple[int, str]]:
    """`state` frames of the kept versions after < version <= upto, ascending."""
    rows = await db.execute(
        select(_changes.c.version, _changes.c.sender, _changes.c.state)
        .where(
            _changes.c.item_id == item_id,
            _changes.c.version > after,
            _changes.c.version <= upto,
        )
        .order_by(_changes.c.version)
    )
    return [(v, state_frame(item_id, v, state, sender)) for v, sender, state in rows]


async def latest_versions(db: AsyncSession, item_ids: Collection[str]) -> dict[str, int]:
    rows = await db.execute(
        select(_states.c.item_id, _states.c.version).where(_states.c.item_id.in_(list(item_ids)))
    )
    return {item_id: version for item_id, version in rows}
