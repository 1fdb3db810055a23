"""Item state: read it, and apply changes to the stored version, one after another.

Every change is applied in a transaction that first locks the item's state row (a row
lock on PostgreSQL, the write lock on SQLite), then checks the author's role, applies
the change with the item's kind to the stored state and bumps the version: concurrent
changes from any number of workers apply one after another, versions 1, 2, 3... with no
gap. A refused change writes nothing and keeps the version.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api import kinds
from api.clock import utcnow
from api.errors import DomainError, Forbidden, NotFound
from api.kinds import Actor, Refusal
from api.models import Item, ItemState, Membership, Role, StateChange

_items = Item.__table__
_members = Membership.__table__
_states = cast(Table, ItemState.__table__)
_changes = cast(Table, StateChange.__table__)


class TooLarge(Refusal):
    """The state the change would produce is larger than MAX_STATE_BYTES."""

    code = "too_large"


@dataclass(frozen=True, slots=True)
class StoredState:
    """An item's state at one version; `sender` made that version (None for version 0)."""

    item_id: str
    kind: str
    version: int
    state: str  # JSON text
    sender: str | None = None

    def body(self) -> str:
        """The REST answer: `{"item_id","kind","version","state"}`."""
        return orjson.dumps(
            {
                "item_id": self.item_id,
                "kind": self.kind,
                "version": self.version,
                "state": orjson.Fragment(self.state),
            }
        ).decode()

    def frame(self) -> str:
        """The channel's `state` frame, encoded once and sent to every socket as is."""
        return state_frame(self.item_id, self.version, self.state, self.sender)


def state_frame(item_id: str, version: int, state: str, sender: str | None) -> str:
    body: dict[str, object] = {
        "type": "state",
        "item_id": item_id,
        "version": version,
        "state": orjson.Fragment(state),
    }
    if sender is not None:
        body["sender"] = sender
    return orjson.dumps(body).decode()


@dataclass(frozen=True, slots=True)
class Change:
    """A change to apply: `field` is "ops" (a JSON Patch) or "action" (a game move)."""

    item_id: str
    user_id: str
    username: str
    field: str
    value: Any


Outcome = StoredState | DomainError | Refusal


def encode_state(state: object) -> str:
    return orjson.dumps(state).decode()


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

    An item's changes see each other: the second applies to the state the first made.
    Items are locked in a fixed order, so two workers cannot deadlock. `keep` versions
    of each item stay in `state_changes` for deliveries that missed some.
    """
    outcomes: list[Outcome] = [NotFound("item not found") for _ in changes]
    by_item: dict[str, list[int]] = {}
    for index, change in enumerate(changes):
        by_item.setdefault(change.item_id, []).append(index)
    current: dict[str, tuple[int, str]] = {}
    for item_id in sorted(by_item):
        row = await _lock(db, item_id)
        if row is not None:
            current[item_id] = row
    rights = await _rights(db, {(c.item_id, c.user_id) for c in changes if c.item_id in current})
    now = utcnow()
    ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
    history: list[dict[str, object]] = []
    for item_id, (version, text) in current.items():
        start = version
        state = orjson.loads(text)
        for index in by_item[item_id]:
            change = changes[index]
            right = rights.get((item_id, change.user_id))
            if right is None:
                continue  # not a member (any more): NotFound
            kind_name, role = right
            if role == Role.reader:
                outcomes[index] = Forbidden("readers cannot change the state")
                continue
            try:
                state, text = _apply(kind_name, state, change, role, max_bytes)
            except Refusal as refusal:
                outcomes[index] = refusal
                continue
            version += 1
            outcomes[index] = StoredState(item_id, kind_name, version, text, change.username)
            history.append(
                {
                    "item_id": item_id,
                    "version": version,
                    "sender": change.username,
                    "state": text,
                    "ts": ts,
                }
            )
        if version != start:
            await db.execute(
                update(_states)
                .where(_states.c.item_id == item_id)
                .values(version=version, state=text)
            )
            await db.execute(
                delete(_changes).where(
                    _changes.c.item_id == item_id, _changes.c.version <= version - keep
                )
            )
    if history:
        # Only the last `keep` of this group need storing; older ones would be pruned.
        await db.execute(insert(_changes), _recent(history, keep))
    await db.commit()
    return outcomes


def _apply(
    kind_name: str, state: Any, change: Change, role: Role, max_bytes: int
) -> tuple[Any, str]:
    kind = kinds.KINDS.get(kind_name)
    if kind is None:
        raise kinds.Invalid(f"this service no longer offers the kind {kind_name!r}")
    if change.field != kind.change_field:
        raise kinds.Invalid(f"a {kind.name} item is changed by {kind.change_field!r}")
    new = kind.apply(state, change.value, Actor(change.username, role.value))
    try:
        text = encode_state(new)
    except TypeError as exc:  # integers beyond 64 bits, nesting beyond 255 levels
        raise kinds.Invalid(f"the state cannot be stored: {exc}") from exc
    # Characters never outnumber bytes; encode only when it could matter.
    if len(text) > max_bytes // 4 and len(text.encode()) > max_bytes:
        raise TooLarge(f"the state would exceed {max_bytes} bytes")
    return new, text


def _recent(history: list[dict[str, object]], keep: int) -> list[dict[str, object]]:
    last: dict[object, int] = {}
    for row in history:
        last[row["item_id"]] = row["version"]  # type: ignore[assignment]
    return [r for r in history if r["version"] > last[r["item_id"]] - keep]  # type: ignore[operator]


async def _lock(db: AsyncSession, item_id: str) -> tuple[int, str] | None:
    """Lock the item's state row for this transaction; its version and state."""
    if db.get_bind().dialect.name == "sqlite":
        # SQLite starts the transaction at the first write: a write that changes nothing
        # takes the database's write lock, so the read below is of the latest state.
        row = (
            await db.execute(
                update(_states)
                .where(_states.c.item_id == item_id)
                .values(version=_states.c.version)
                .returning(_states.c.version, _states.c.state)
            )
        ).first()
    else:
        row = (
            await db.execute(
                select(_states.c.version, _states.c.state)
                .where(_states.c.item_id == item_id)
                .with_for_update()
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def _rights(
    db: AsyncSession, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, Role]]:
    """(item, user) -> (the item's kind, the user's role); non-members are absent."""
    if not pairs:
        return {}
    items = {item for item, _ in pairs}
    users = {user for _, user in pairs}
    rows = await db.execute(
        select(_items.c.id, _items.c.kind, _items.c.owner_id, _members.c.user_id, _members.c.role)
        .outerjoin(_members, and_(_members.c.item_id == _items.c.id, _members.c.user_id.in_(users)))
        .where(_items.c.id.in_(items))
    )
    rights: dict[tuple[str, str], tuple[str, Role]] = {}
    for item_id, kind, owner_id, member_id, role in rows:
        rights[(item_id, owner_id)] = (kind, Role.owner)
        if member_id is not None and member_id != owner_id:
            rights[(item_id, member_id)] = (kind, Role(role))
    return {pair: rights[pair] for pair in pairs if pair in rights}


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
