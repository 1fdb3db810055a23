"""ORM models: users, server-side sessions, items, memberships, messages, item states."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ColumnElement, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.db import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    owner = "owner"
    writer = "writer"
    reader = "reader"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The name in lower case: unique, so `alice` and `Alice` are one name (spelt as given).
    username_key: Mapped[str] = mapped_column(
        String(64),
        unique=True,
        default=lambda ctx: username_key(ctx.get_current_parameters()["username"]),
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def username_key(username: str) -> str:
    return username.lower()  # names are ASCII


def same_name(username: str) -> ColumnElement[bool]:
    """The user of this name in any case: `ALICE` is `alice`."""
    return User.username_key == username_key(username)


class AuthSession(Base):
    """A login. The cookie holds a random id; only its SHA-256 is stored here."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How the item's state may change (a registered kind, see api/kinds/); fixed at creation.
    kind: Mapped[str] = mapped_column(String(32), default="document", server_default="document")
    # The highest seq assigned; incremented in the transaction that stores a message,
    # whose row lock serialises publishers of one item on every backend.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Membership(Base):
    __tablename__ = "memberships"

    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="member_role", native_enum=False, length=16, validate_strings=True)
    )


class Message(Base):
    __tablename__ = "messages"
    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sender: Mapped[str] = mapped_column(String(64))
    # The payload as JSON text, encoded once when published and sent as is.
    data: Mapped[str] = mapped_column(Text)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsedTicket(Base):
    """Channel tickets already presented: single use, across every worker."""

    __tablename__ = "used_tickets"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ItemState(Base):
    """An item's current state and its version (0 when created, +1 per change)."""

    __tablename__ = "item_states"

    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=0)
    # JSON text, encoded once when changed and sent as is.
    state: Mapped[str] = mapped_column(Text)


class StateChange(Base):
    """Recent versions of an item's state, so that deliveries can fill their gaps.

    At least the last `STATE_HISTORY` versions of each item are kept, at most a tenth more
    (they are pruned in steps): this is not an archive.
    """

    __tablename__ = "state_changes"

    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sender: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(Text)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
