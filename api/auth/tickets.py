"""Single-use channel tickets: the first presentation consumes one, on any worker."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth.credentials import TicketConsumer
from api.auth.security import TokenClaims
from api.clock import utcnow
from api.models import UsedTicket

# Every this many consumptions, the rows of expired tickets are deleted.
CLEANUP_EVERY = 256


def ticket_consumer(session_factory: async_sessionmaker[AsyncSession]) -> TicketConsumer:
    consumed = 0

    async def consume(claims: TokenClaims) -> bool:
        nonlocal consumed
        # The primary key makes the insert the arbiter: of two concurrent uses, one wins.
        async with session_factory() as db:
            db.add(UsedTicket(jti=claims.jti, expires_at=datetime.fromtimestamp(claims.exp, UTC)))
            try:
                await db.commit()
            except IntegrityError:
                return False
            consumed += 1
            if consumed % CLEANUP_EVERY == 0:
                await forget_expired(db)
            return True

    return consume


async def forget_expired(db: AsyncSession) -> None:
    """Expired tickets are refused by their `exp`; their jti need not be kept."""
    await db.execute(delete(UsedTicket).where(UsedTicket.expires_at < utcnow()))
    await db.commit()
