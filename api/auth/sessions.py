"""Server-side sessions: open on login, look up, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.security import hash_secret, new_id, new_session_secret
from api.db import utcnow
from api.models import AuthSession, User


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A live session and its user, as the credential checks need them."""

    session_id: str
    expires_at: datetime
    user_id: str
    username: str


async def open_session(db: AsyncSession, user: User, ttl: int) -> tuple[str, AuthSession]:
    """Create a session; returns the cookie secret (never stored) and the row."""
    secret = new_session_secret()
    row = AuthSession(
        id=new_id(),
        secret_hash=hash_secret(secret),
        user_id=user.id,
        expires_at=utcnow() + timedelta(seconds=ttl),
    )
    db.add(row)
    await db.commit()
    return secret, row


async def by_id(db: AsyncSession, session_id: str) -> ActiveSession | None:
    return await _active(db, AuthSession.id == session_id)


async def by_secret(db: AsyncSession, secret: str) -> ActiveSession | None:
    # Looked up by hash: an index on a hash of a 256-bit secret leaks no timing worth having.
    return await _active(db, AuthSession.secret_hash == hash_secret(secret))


async def _active(db: AsyncSession, condition: object) -> ActiveSession | None:
    row = (
        await db.execute(
            select(AuthSession.id, AuthSession.expires_at, User.id, User.username)
            .join(User, User.id == AuthSession.user_id)
            .where(condition, AuthSession.revoked_at.is_(None), AuthSession.expires_at > utcnow())
        )
    ).first()
    if row is None:
        return None
    return ActiveSession(session_id=row[0], expires_at=row[1], user_id=row[2], username=row[3])


async def revoke(db: AsyncSession, session_id: str) -> None:
    await db.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await db.commit()
