"""Items and memberships, and the permission rules around them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Conflict, Forbidden, NotFound
from api.items.state import initial_state
from api.kinds import DEFAULT_KIND
from api.models import Item, ItemState, Membership, Role, User, same_name


@dataclass(frozen=True, slots=True)
class ItemView:
    id: str
    name: str
    owner: str
    created_at: datetime
    kind: str


@dataclass(frozen=True, slots=True)
class Access:
    """A caller's standing on an item."""

    item_id: str
    role: Role
    last_seq: int

    @property
    def can_publish(self) -> bool:
        return self.role in (Role.owner, Role.writer)


def new_item_id() -> str:
    return secrets.token_urlsafe(12)


async def create_item(
    db: AsyncSession, owner_id: str, name: str, item_id: str | None, kind: str = DEFAULT_KIND
) -> ItemView:
    """Create an item with its state at version 0; `kind` must be a registered one."""
    owner = await db.scalar(select(User.username).where(User.id == owner_id)) or ""
    item = Item(id=item_id or new_item_id(), name=name, owner_id=owner_id, kind=kind)
    db.add(item)
    # Flushed before the state row, whose foreign key needs the item.
    try:
        await db.flush()
        db.add(ItemState(item_id=item.id, version=0, state=initial_state(kind, owner)))
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict("item id already taken") from exc
    return ItemView(item.id, item.name, owner, item.created_at, item.kind)


def _item_views() -> Select[str, str, str, datetime, str]:
    return select(Item.id, Item.name, User.username, Item.created_at, Item.kind).join(
        User, User.id == Item.owner_id
    )


async def list_items(db: AsyncSession, user_id: str) -> list[ItemView]:
    member_of = select(Membership.item_id).where(Membership.user_id == user_id)
    rows = await db.execute(
        _item_views()
        .where(or_(Item.owner_id == user_id, Item.id.in_(member_of)))
        .order_by(Item.created_at, Item.id)
    )
    return [ItemView(*row) for row in rows]


async def access(db: AsyncSession, item_id: str, user_id: str) -> Access:
    """The caller's role; `NotFound` whether the item is missing or simply not theirs."""
    row = (
        await db.execute(
            select(Item.owner_id, Item.last_seq, Membership.role)
            .outerjoin(
                Membership, (Membership.item_id == Item.id) & (Membership.user_id == user_id)
            )
            .where(Item.id == item_id)
        )
    ).first()
    if row is None:
        raise NotFound("item not found")
    owner_id, last_seq, role = row
    if owner_id == user_id:
        return Access(item_id, Role.owner, last_seq)
    if role is None:
        raise NotFound("item not found")
    return Access(item_id, Role(role), last_seq)


async def require_owner(db: AsyncSession, item_id: str, user_id: str) -> Access:
    standing = await access(db, item_id, user_id)
    if standing.role != Role.owner:
        raise Forbidden("only the owner may do this")
    return standing


async def get_item(db: AsyncSession, item_id: str, user_id: str) -> ItemView:
    await access(db, item_id, user_id)
    row = (await db.execute(_item_views().where(Item.id == item_id))).one()
    return ItemView(*row)


async def delete_item(db: AsyncSession, item_id: str, user_id: str) -> None:
    await require_owner(db, item_id, user_id)
    await db.execute(delete(Item).where(Item.id == item_id))
    await db.commit()


async def list_members(db: AsyncSession, item_id: str, user_id: str) -> list[tuple[str, str]]:
    await access(db, item_id, user_id)
    owner = await db.scalar(
        select(User.username).join(Item, Item.owner_id == User.id).where(Item.id == item_id)
    )
    rows = await db.execute(
        select(User.username, Membership.role)
        .join(User, User.id == Membership.user_id)
        .where(Membership.item_id == item_id)
        .order_by(User.username)
    )
    return [(owner or "", Role.owner.value)] + [(name, Role(role).value) for name, role in rows]


async def set_member(
    db: AsyncSession, item_id: str, owner_id: str, username: str, role: Role
) -> tuple[str, str]:
    """Add or change a member; their user id and username as registered (`username`
    matches it in any case)."""
    await require_owner(db, item_id, owner_id)
    found = (await db.execute(select(User.id, User.username).where(same_name(username)))).first()
    if found is None:
        raise NotFound("user not found")
    member_id, registered = found
    if member_id == owner_id:
        raise Conflict("the owner's role cannot be changed")
    membership = await db.get(Membership, (item_id, member_id))
    if membership is None:
        db.add(Membership(item_id=item_id, user_id=member_id, role=role))
    else:
        membership.role = role
    try:
        await db.commit()
    except IntegrityError as exc:  # the item was deleted meanwhile
        await db.rollback()
        raise NotFound("item not found") from exc
    return member_id, registered


async def remove_member(db: AsyncSession, item_id: str, owner_id: str, username: str) -> str:
    """Remove a member; returns their user id."""
    await require_owner(db, item_id, owner_id)
    member_id = await db.scalar(select(User.id).where(same_name(username)))
    result = await db.execute(
        delete(Membership).where(Membership.item_id == item_id, Membership.user_id == member_id)
    )
    if member_id is None or result.rowcount == 0:  # type: ignore[attr-defined]
        await db.rollback()
        raise NotFound("member not found")
    await db.commit()
    return member_id
