"""Accounts: registration and password checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.security import hash_password, new_id, verify_password
from api.errors import Conflict, Unauthorized
from api.models import User, same_name, username_key
from api.patterns import USERNAME_RE

# Runs a password hash off the event loop: `asyncio.to_thread`, or a bounded gate.
Hashing = Callable[..., Awaitable[Any]]


async def register(
    db: AsyncSession, username: str, password: str, hashing: Hashing = asyncio.to_thread
) -> User:
    # Argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    password_hash = await hashing(hash_password, password)
    user = User(
        id=new_id(),
        username=username,
        username_key=username_key(username),
        password_hash=password_hash,
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict("username already taken") from exc
    return user


async def authenticate(
    db: AsyncSession, username: str, password: str, hashing: Hashing = asyncio.to_thread
) -> User:
    """The user for these credentials; one answer for unknown names and wrong passwords."""
    # A name outside the pattern cannot exist: no query (PostgreSQL refuses some of
    # them, NUL for one), but the same hash work as for any unknown user.
    user = None
    if USERNAME_RE.fullmatch(username):
        user = await get_by_username(db, username)
    ok = await hashing(verify_password, user.password_hash if user else None, password)
    if not ok or user is None:
        raise Unauthorized("incorrect username or password")
    return user


async def get_by_username(db: AsyncSession, username: str) -> User | None:
    """The user of this name, in any case (`ALICE` is `alice`)."""
    return await db.scalar(select(User).where(same_name(username)))
